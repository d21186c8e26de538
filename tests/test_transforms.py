"""Joint image/label transforms: geometry kept in step, padding values, seeds, normalisation."""

from __future__ import annotations

import random

import pytest
import torch

from rtseg import utils
from rtseg.data.transforms import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ColorJitter,
    Compose,
    HorizontalFlip,
    Normalize,
    RandomCrop,
    RandomScale,
    RandomScaleCrop,
    train_transforms,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coded_pair(h: int = 12, w: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """An image whose red channel encodes the column and whose label encodes the row, so any
    misalignment between image and label geometry shows."""
    cols = torch.arange(w).expand(h, w)
    rows = torch.arange(h)[:, None].expand(h, w)
    image = torch.stack([cols * 10, rows * 10, torch.full((h, w), 7)]).to(torch.uint8)
    return image, rows.clone().long()


def test_flip_moves_image_and_label_together() -> None:
    image, _ = coded_pair()
    label = torch.arange(20).expand(12, 20).clone()  # label = column
    flipped_image, flipped_label = HorizontalFlip(p=1.0)(image, label, gen())
    assert torch.equal(flipped_image[0].long() // 10, flipped_label)
    assert int(flipped_label[0, 0]) == 19
    same_image, same_label = HorizontalFlip(p=0.0)(image, label, gen())
    assert torch.equal(same_image, image) and torch.equal(same_label, label)


def test_crop_is_aligned_and_pads_with_zero_and_ignore() -> None:
    image, label = coded_pair()
    out_image, out_label = RandomCrop((8, 8))(image, label, gen(3))
    assert out_image.shape == (3, 8, 8) and out_label.shape == (8, 8)
    assert torch.equal(out_image[1].long() // 10, out_label)  # rows agree
    big_image, big_label = RandomCrop((16, 24))(image, label, gen(3))
    assert big_image.shape == (3, 16, 24)
    assert torch.equal(big_image[:, :12, :20], image) and torch.equal(big_label[:12, :20], label)
    assert int(big_image[:, 12:].abs().sum()) == 0 and int(big_image[:, :, 20:].abs().sum()) == 0
    assert torch.all(big_label[12:] == 255) and torch.all(big_label[:, 20:] == 255)


def test_scale_uses_nearest_labels_and_expected_size() -> None:
    image, label = coded_pair(30, 40)
    label[label % 3 == 0] = 255
    for seed in range(5):
        g = gen(seed)
        scale = 0.5 + 1.5 * float(torch.rand((), generator=gen(seed)))
        out_image, out_label = RandomScale(0.5, 2.0)(image, label, g)
        assert out_image.shape[-2:] == (round(30 * scale), round(40 * scale))
        assert out_image.dtype == torch.uint8 and out_label.dtype == torch.int64
        assert set(out_label.unique().tolist()) <= set(label.unique().tolist())
    with pytest.raises(ValueError, match="min_scale <= max_scale"):
        RandomScale(2.0, 1.0)


def test_jitter_changes_colours_only_and_stays_in_range() -> None:
    image = torch.rand(3, 16, 16)
    label = torch.randint(0, 5, (16, 16))
    out_image, out_label = ColorJitter(0.4, 0.4, 0.4, hue=0.1)(image, label, gen(1))
    assert out_label is label
    assert float(out_image.min()) >= 0.0 and float(out_image.max()) <= 1.0
    assert not torch.allclose(out_image, image)
    grey = torch.full((3, 4, 4), 0.5)
    # Saturation and hue leave a grey image grey.
    assert torch.allclose(ColorJitter(0, 0, 0.5, hue=0.3)(grey, label[:4, :4], gen())[0], grey)


def test_normalize_matches_formula() -> None:
    image = torch.randint(0, 256, (3, 5, 6), dtype=torch.uint8)
    out, _ = Normalize()(image, torch.zeros(5, 6, dtype=torch.long), gen())
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(out, (image.float() / 255 - mean) / std)
    with pytest.raises(ValueError, match="std > 0"):
        Normalize(std=(1.0, 0.0, 1.0))


def test_train_pipeline_is_reproducible_under_a_seed() -> None:
    image = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)
    label = torch.randint(0, 11, (40, 60))
    pipeline = train_transforms((32, 32))
    a = pipeline(image, label, gen(7))
    b = pipeline(image, label, gen(7))
    c = pipeline(image, label, gen(8))
    assert a[0].shape == (3, 32, 32) and a[0].dtype == torch.float32 and a[1].shape == (32, 32)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def _reference_scale_crop(
    image: torch.Tensor,
    label: torch.Tensor,
    generator: torch.Generator,
    crop: tuple[int, int],
    min_scale: float,
    max_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pre-fusion pipeline as the reference: the library's RandomScale (the whole image
    resized by F.interpolate) then RandomCrop (pad 0 / 255), both kept unchanged."""
    return Compose([RandomScale(min_scale, max_scale), RandomCrop(crop)])(image, label, generator)


def _cases(n: int) -> list[tuple[int, int, tuple[int, int], float, float]]:
    """Random (H, W, crop, min_scale, max_scale): odd sizes, 1-pixel sides, images smaller and
    larger than the crop, scales below and above 1, and a few big enough (H' + W' > 128) that
    F.interpolate takes its generic kernel rather than the small-output one."""
    rng = random.Random(1234)
    cases = []
    for k in range(n):
        big = k % 5 == 0
        h, w = rng.randint(1, 160 if big else 48), rng.randint(1, 240 if big else 48)
        crop = (rng.randint(1, 96 if big else 40), rng.randint(1, 96 if big else 40))
        lo = rng.choice([0.05, 0.25, 0.5, 0.9, 1.0, 1.3, 2.0])
        cases.append((h, w, crop, lo, lo * rng.choice([1.0, 1.1, 2.0, 4.0])))
    return cases


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_scale_crop_matches_the_two_step_reference(dtype: torch.dtype) -> None:
    worst, mismatched, pixels = 0.0, 0, 0
    for seed, (h, w, crop, lo, hi) in enumerate(_cases(300)):
        g = gen(seed)
        image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
        label = torch.randint(0, 256, (h, w), generator=g)  # includes 255 = ignore
        label = label.to(torch.uint8) if seed % 3 == 0 else label  # uint8 labels work too
        if dtype != torch.uint8:
            image = image.to(dtype) / 255
        g_ref, g_new = gen(seed), gen(seed)
        ref_image, ref_label = _reference_scale_crop(image, label, g_ref, crop, lo, hi)
        new_image, new_label = RandomScaleCrop(crop, lo, hi)(image, label, g_new)
        context = f"seed {seed}: {h}x{w} crop {crop} scale [{lo}, {hi}]"
        assert torch.equal(g_ref.get_state(), g_new.get_state()), context  # same draws
        assert new_image.shape == ref_image.shape == (3, *crop), context
        assert new_image.dtype == ref_image.dtype and new_label.dtype == ref_label.dtype
        assert torch.equal(new_label, ref_label), context
        diff = (new_image.double() - ref_image.double()).abs()
        worst = max(worst, float(diff.max()))
        mismatched += int((diff > 0).sum())
        pixels += diff.numel()
    if dtype == torch.uint8:
        # Only rounding: at most one level, and rarely (F.interpolate's own kernels differ).
        assert worst <= 1 and mismatched <= pixels * 1e-2, (worst, mismatched, pixels)
    else:
        assert worst <= 1e-6, worst


def test_scale_crop_resamples_like_interpolate_at_cityscapes_like_size() -> None:
    image = torch.randint(0, 256, (3, 256, 512), dtype=torch.uint8, generator=gen(5))
    label = torch.randint(0, 19, (256, 512), generator=gen(6))
    for seed in range(6):
        g_ref, g_new = gen(seed), gen(seed)
        ref = _reference_scale_crop(image, label, g_ref, (256, 256), 0.5, 2.0)
        new = RandomScaleCrop(256, 0.5, 2.0)(image, label, g_new)
        assert torch.equal(new[1], ref[1])
        assert int((new[0].int() - ref[0].int()).abs().max()) <= 1


def test_scale_crop_pads_with_zero_and_ignore_and_keeps_alignment() -> None:
    image, label = coded_pair(12, 20)
    out_image, out_label = RandomScaleCrop((16, 24), 0.5, 0.5)(image, label, gen(2))
    assert out_image.shape == (3, 16, 24) and out_label.shape == (16, 24)
    assert int(out_image[:, 6:].abs().sum()) == 0 and int(out_image[:, :, 10:].abs().sum()) == 0
    assert torch.all(out_label[6:] == IGNORE_INDEX) and torch.all(out_label[:, 10:] == IGNORE_INDEX)
    assert set(out_label[:6, :10].unique().tolist()) <= set(range(12))
    # Scale 1 is a plain crop of the input.
    same_image, same_label = RandomScaleCrop((8, 8), 1.0, 1.0)(image, label, gen(3))
    assert torch.equal(same_image[1].long() // 10, same_label)
    with pytest.raises(ValueError, match="min_scale <= max_scale"):
        RandomScaleCrop(8, 2.0, 1.0)


def test_scale_crop_draws_only_from_its_generator() -> None:
    image = torch.randint(0, 256, (3, 45, 67), dtype=torch.uint8, generator=gen(0))
    label = torch.randint(0, 11, (45, 67), generator=gen(1))
    transform = RandomScaleCrop((32, 40), 0.5, 2.0)
    torch.manual_seed(0)
    global_state = torch.get_rng_state()
    a = transform(image, label, gen(7))
    assert torch.equal(torch.get_rng_state(), global_state)  # the global RNG is untouched
    torch.manual_seed(99)
    b = transform(image, label, gen(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = transform(image, label, gen(8))
    assert not torch.equal(a[0], c[0])


def test_train_pipeline_uses_the_fused_crop_and_matches_the_old_one() -> None:
    image = torch.randint(0, 256, (3, 90, 130), dtype=torch.uint8, generator=gen(3))
    label = torch.randint(0, 11, (90, 130), generator=gen(4))
    pipeline = train_transforms((64, 96))
    assert isinstance(pipeline.transforms[0], RandomScaleCrop)
    old = Compose([RandomScale(0.5, 2.0), RandomCrop((64, 96)), *pipeline.transforms[1:]])
    for seed in range(8):
        g_old, g_new = gen(seed), gen(seed)
        old_image, old_label = old(image, label, g_old)
        new_image, new_label = pipeline(image, label, g_new)
        assert torch.equal(new_label, old_label)
        assert torch.equal(g_old.get_state(), g_new.get_state())
        # A one-level rounding difference may survive jitter and normalisation (÷ std ≈ 0.22).
        assert torch.allclose(new_image, old_image, atol=0.1)


def test_constants_come_from_utils() -> None:
    assert IGNORE_INDEX == utils.IGNORE_INDEX == 255
    assert IMAGENET_MEAN is utils.IMAGENET_MEAN and IMAGENET_STD is utils.IMAGENET_STD
