"""Joint image/label transforms: geometry kept in step, padding values, seeds, normalisation."""

from __future__ import annotations

import pytest
import torch

from rtseg.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ColorJitter,
    HorizontalFlip,
    Normalize,
    RandomCrop,
    RandomScale,
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
