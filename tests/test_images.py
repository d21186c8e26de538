"""One image path for inference: files, PIL images and arrays in every usual mode give the pixels
a viewer shows (16-bit scaled, alpha dropped, EXIF orientation applied), and a float tensor
outside [0, 1] is refused. Every image is made here, in the mode under test."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from torch import nn

import rtseg
from rtseg.data import read_image
from rtseg.data.images import rgb_from_array, rgb_from_pil
from rtseg.errors import RtsegError, UsageError
from rtseg.predict import predict_path
from rtseg.segmenter import to_rgb_array


class Brightness(nn.Module):
    """Two classes: 1 where the mean of R, G and B is above 0.5 (the input is not normalised)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(1, keepdim=True) - 0.5
        return torch.cat([-m, m], 1)


@pytest.fixture
def seg() -> rtseg.Segmenter:
    return rtseg.Segmenter(Brightness(), ["dark", "bright"], [(0, 0, 0), (255, 255, 255)],
                           "cpu", mean=(0, 0, 0), std=(1, 1, 1))


def _picture(h: int = 40, w: int = 24) -> np.ndarray:
    """An RGB picture of flat blocks (JPEG keeps them) that no flip or turn maps onto itself."""
    image = np.zeros((h, w, 3), np.uint8)
    image[: h // 4, :] = (240, 230, 220)  # a bright band at the top
    image[:, : w // 3] += np.array([0, 0, 10], np.uint8)
    image[h // 2 :, w // 2 :] = (250, 250, 250)  # a bright bottom-right quarter
    return image


def _same_everywhere(path: Path, expected: np.ndarray) -> None:
    """The file by path, as a PIL image and (decoded by Pillow alone) agree with ``expected``."""
    assert np.array_equal(to_rgb_array(path), expected)
    assert np.array_equal(to_rgb_array(str(path)), expected)
    with Image.open(path) as image:
        assert np.array_equal(to_rgb_array(image), expected)


def test_16_bit_grey_is_scaled_not_clipped_in_every_form(tmp_path: Path, seg) -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))  # dark to white
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    expected = np.repeat((ramp >> 8).astype(np.uint8)[..., None], 3, axis=2)
    with Image.open(path) as image:
        assert image.mode.startswith("I;16")
        assert np.array(image.convert("RGB")).mean() > 250  # Pillow's own conversion clips
    _same_everywhere(path, expected)
    assert to_rgb_array(path).mean() == pytest.approx(127.5, abs=1)
    with Image.open(path) as image:  # the same values as a 32-bit "I" image, and as an array
        assert np.array_equal(to_rgb_array(image.convert("I")), expected)
    assert np.array_equal(to_rgb_array(ramp), expected)
    labels = seg(path)
    assert labels[:, :31].max() == 0 and labels[:, 33:].min() == 1  # dark half, bright half
    assert np.array_equal(seg(Image.open(path)), labels)
    wide = Image.fromarray(np.array([[70000]], np.int32), "I")
    with pytest.raises(UsageError, match=r"32-bit values 70000…70000 \(mode I\)"):
        rgb_from_pil(wide)


def test_exif_rotated_portrait_is_segmented_upright_on_the_inference_path_only(
        tmp_path: Path, seg) -> None:
    upright = _picture()  # 40 high, 24 wide, as the viewer shows it
    path = tmp_path / "portrait.jpg"
    # the camera stores it sideways and says "turn 90° clockwise to show" (Orientation 6)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=95, exif=exif)
    with Image.open(path) as image:
        assert image.size == (40, 24) and image.getexif()[0x0112] == 6
        shown = np.array(ImageOps.exif_transpose(image))
    assert shown.shape == (40, 24, 3) and np.abs(shown.astype(int) - upright).max() < 16
    _same_everywhere(path, shown)
    expected = seg(upright)
    assert expected.shape == (40, 24) and 0 < expected.mean() < 1
    assert np.array_equal(seg(path), expected)
    assert np.array_equal(seg(Image.open(path)), expected)
    # an image already turned (tag removed by exif_transpose) is not turned again
    with Image.open(path) as image:
        assert np.array_equal(seg(ImageOps.exif_transpose(image)), expected)
    written = predict_path(seg, path, tmp_path / "out", progress=False)
    label = np.array(Image.open(tmp_path / "out" / "portrait_label.png"))
    assert np.array_equal(label, expected) and Image.open(written[0]).size == (24, 40)
    # the data-set loaders read pixels as stored: labels are stored for them
    assert read_image(path).shape == (3, 24, 40)


def test_float_tensor_outside_unit_range_is_refused_in_one_line(seg) -> None:
    image = torch.from_numpy(_picture()).permute(2, 0, 1)
    with pytest.raises(UsageError) as info:
        seg(image.float())  # 0–255 floats
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, RtsegError)
    assert str(err) == ("float image tensor has values in [0, 250]; expected floats in [0, 1] "
                        "(or uint8 0–255): divide a 0–255 image by 255")
    for bad in (image.float() / 255 - 0.5, torch.full((3, 4, 4), float("nan"))):
        with pytest.raises(UsageError, match=r"expected floats in \[0, 1\]"):
            seg(bad)
    with pytest.raises(UsageError, match="float image array has values in"):
        seg(_picture().astype(np.float32))
    with pytest.raises(UsageError, match="got torch.int64"):
        seg(image.long())
    assert torch.equal(seg(image.float() / 255), seg(image))
    assert np.array_equal(seg(_picture().astype(np.float64) / 255), seg(_picture()))


@pytest.mark.parametrize("mode,suffix", [("P", ".png"), ("RGBA", ".png"), ("LA", ".png"),
                                         ("L", ".png"), ("1", ".png"), ("CMYK", ".jpg")])
def test_every_mode_reads_as_pillow_shows_it(tmp_path: Path, mode: str, suffix: str) -> None:
    rgb = Image.fromarray(_picture())
    if mode == "P":
        image = rgb.quantize(colors=4)
    elif mode in ("RGBA", "LA"):
        image = rgb.convert(mode)
        image.putalpha(Image.linear_gradient("L").resize(rgb.size))  # alpha 0…255
    else:
        image = rgb.convert(mode)
    path = tmp_path / f"x{suffix}"
    image.save(path, **({"quality": 95} if suffix == ".jpg" else {}))
    with Image.open(path) as opened:
        assert opened.mode == mode
        # alpha dropped, grey replicated, palette and CMYK converted by Pillow
        expected = np.array(opened.convert("RGB"))
    _same_everywhere(path, expected)
    if mode == "RGBA":
        assert np.array_equal(expected, _picture())  # the colour under any alpha
    if mode == "LA":
        assert np.array_equal(expected[..., 1], np.array(rgb.convert("L")))
    if mode in ("RGBA", "LA"):  # H×W×4 or H×W×2 as a user's array: the same
        assert np.array_equal(rgb_from_array(np.array(Image.open(path))), expected)
    if mode == "CMYK":
        assert np.abs(expected.astype(int) - _picture()).max() < 16
    if mode in ("L", "1"):
        assert np.array_equal(rgb_from_array(np.array(Image.open(path))), expected)
        assert (expected[..., 0] == expected[..., 2]).all()


def test_array_forms_and_their_limits() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    assert np.array_equal(rgb_from_array(grey), rgb)
    assert np.array_equal(rgb_from_array(grey[..., None]), rgb)
    assert np.array_equal(rgb_from_array(grey.astype(np.uint16) << 8), rgb)
    assert np.array_equal(rgb_from_array(grey > 5), np.where(rgb > 5, 255, 0))
    with pytest.raises(UsageError, match=r"got shape \(3, 4, 5\)"):
        rgb_from_array(np.zeros((3, 4, 5), np.uint8))
    with pytest.raises(UsageError, match="got int32"):
        rgb_from_array(grey.astype(np.int32))
