"""Joint image/label transforms on tensors (no torchvision).

Every transform is called as ``t(image, label, generator)`` and returns ``(image, label)``:

* ``image``: 3×H×W, uint8 (0..255) or float (0..1 before :class:`Normalize`);
* ``label``: H×W int64 class indices (255 = ignore);
* ``generator``: a ``torch.Generator``; every random draw comes from it, so a sample is
  reproducible from its seed whichever worker process makes it.

Geometric and colour transforms keep the image dtype. :class:`ToFloat` turns uint8 into float
in [0, 1]; :class:`Normalize` does that too when it is given uint8, then standardises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# The constants live in rtseg.utils; other modules still import them from here.
from ..utils import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from .io import Transform

Pair = tuple[torch.Tensor, torch.Tensor]
# ITU-R BT.601 luma weights, the usual grey conversion for saturation/contrast jitter.
_LUMA = (0.299, 0.587, 0.114)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _to_float(image: torch.Tensor) -> torch.Tensor:
    return image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()


def _like(result: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Cast a float result back to the dtype of ``original`` (uint8: round and clamp)."""
    if original.dtype == torch.uint8:
        return result.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return result


def _pair_size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


class Compose:
    """Apply transforms in order: ``Compose([a, b])(x, y, g) == b(*a(x, y, g), g)``."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator) -> Pair:
        for transform in self.transforms:
            image, label = transform(image, label, generator)
        return image, label

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class ToFloat:
    """uint8 image 0..255 → float32 0..1 (float images are passed through); label unchanged."""

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator) -> Pair:
        return _to_float(image), label

    def __repr__(self) -> str:
        return "ToFloat()"


class Normalize:
    """``(image - mean) / std`` per channel, with mean/std given in [0, 1] units.

    A uint8 image is first divided by 255, so ``Normalize`` alone turns a raw sample into
    the float32 network input; a float image is taken to be in [0, 1] already.
    """

    def __init__(
        self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ) -> None:
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each, std > 0; got {mean}, {std}")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator) -> Pair:
        return (_to_float(image) - self.mean) / self.std, label

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


class RandomScale:
    """Resize by a factor drawn uniformly from [min_scale, max_scale].

    Image: bilinear (``align_corners=False``); label: nearest, so no new label values appear.
    Output size is ``round(H·s) × round(W·s)`` (at least 1×1).
    """

    def __init__(self, min_scale: float = 0.5, max_scale: float = 2.0) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale = min_scale
        self.max_scale = max_scale

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator) -> Pair:
        scale = _uniform(generator, self.min_scale, self.max_scale)
        h, w = image.shape[-2:]
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        if size == (h, w):
            return image, label
        resized = F.interpolate(
            _to_float(image)[None], size=size, mode="bilinear", align_corners=False
        )[0]
        # Float32 holds label values up to 2^24 exactly, so nearest on float is lossless.
        new_label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0]
        return _like(resized, image), new_label.to(label.dtype)

    def __repr__(self) -> str:
        return f"RandomScale({self.min_scale}, {self.max_scale})"


class RandomCrop:
    """Crop a random ``size`` (h, w) window; pad first (bottom/right) where the input is smaller.

    Padding: image ``image_pad`` (0 = black before normalisation), label ``label_pad``
    (255 = ignore), so padded pixels add nothing to the loss.
    """

    def __init__(
        self, size: int | Sequence[int], image_pad: float = 0, label_pad: int = IGNORE_INDEX
    ) -> None:
        self.size = _pair_size(size)
        self.image_pad = image_pad
        self.label_pad = label_pad

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator) -> Pair:
        crop_h, crop_w = self.size
        h, w = image.shape[-2:]
        pad_h, pad_w = max(crop_h - h, 0), max(crop_w - w, 0)
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), value=self.image_pad)
            label = F.pad(label, (0, pad_w, 0, pad_h), value=self.label_pad)
            h, w = h + pad_h, w + pad_w
        top = int(torch.randint(0, h - crop_h + 1, (), generator=generator))
        left = int(torch.randint(0, w - crop_w + 1, (), generator=generator))
        return (
            image[:, top : top + crop_h, left : left + crop_w],
            label[top : top + crop_h, left : left + crop_w],
        )

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


def _float32_ratio(in_size: int, out_size: int) -> float:
    """``in_size / out_size`` rounded to float32, as PyTorch's resize kernels hold it.

    Rounding the double quotient to float32 equals direct float32 division (53 >= 2·24 + 2).
    """
    return float(torch.tensor(in_size / out_size, dtype=torch.float32))


def _linear_taps(
    start: int, count: int, in_size: int, out_size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Source indices ``i0, i1`` and float32 weights ``w0, w1`` of output positions
    ``start .. start+count-1`` along one axis, exactly as ``F.interpolate(mode="bilinear",
    align_corners=False)`` computes them on CPU (see the ``RandomScaleCrop`` docstring)."""
    dst = torch.arange(start, start + count)
    if out_size == in_size:  # PyTorch copies an unchanged axis
        return dst, dst, torch.ones(count), torch.zeros(count)
    ratio = _float32_ratio(in_size, out_size)
    # float32(ratio·(d + 0.5) - 0.5): exact in double, then one rounding, as in the C++.
    src = ((dst.double() + 0.5) * ratio - 0.5).float().clamp_(min=0.0)
    i0 = src.long().clamp_(max=in_size - 1)
    i1 = (i0 + 1).clamp_(max=in_size - 1)
    w1 = (src - i0.float()).clamp_(0.0, 1.0)
    return i0, i1, 1.0 - w1, w1


def _nearest_taps(start: int, count: int, in_size: int, out_size: int) -> Tensor:
    """Source indices of output positions ``start .. start+count-1`` as
    ``F.interpolate(mode="nearest")`` picks them: ``min(floor(float32(d · in/out)), in - 1)``."""
    dst = torch.arange(start, start + count)
    if out_size == in_size:
        return dst
    ratio = torch.tensor(_float32_ratio(in_size, out_size), dtype=torch.float32)
    return (dst.float() * ratio).floor_().long().clamp_(max=in_size - 1)


class RandomScaleCrop:
    """:class:`RandomScale` then :class:`RandomCrop` in one step that resamples only the window.

    Random draws, all from ``generator`` and in the order of the two-step pipeline: the scale
    ``s ~ U[min_scale, max_scale]``, then ``top``, then ``left``. The scaled size is
    ``H' = max(1, round(H·s))``, ``W'`` likewise; the scaled image is padded bottom/right to at
    least ``crop_h × crop_w`` and ``top``, ``left`` are uniform over the valid window positions.
    So for one generator state both pipelines pick the same scale and the same window.

    Output pixel ``(i, j)`` is scaled pixel ``(y, x) = (top + i, left + j)``, or padding
    (image ``image_pad``, label ``label_pad``) where ``y >= H'`` or ``x >= W'``. Per axis (rows
    shown; ``r = H / H'`` rounded to float32), as ``F.interpolate`` on CPU:

    * image, bilinear (``align_corners=False``): ``u = max(0, r·(y + 0.5) - 0.5)`` (float32),
      taps ``y0 = min(floor(u), H - 1)``, ``y1 = min(y0 + 1, H - 1)``, weight
      ``λ = clamp(u - y0, 0, 1)``; the value is ``(1-λ)·row(y0) + λ·row(y1)`` with each row
      first interpolated along columns the same way. uint8 is divided by 255, interpolated in
      float32 and rounded back (as :class:`RandomScale`); other float types give float32;
    * label, nearest: source row ``min(floor(float32(y · r)), H - 1)``;
    * an axis whose size does not change is copied; when neither changes the window is a view.

    Only the source rows ``y0[0] .. y1[-1]`` and columns the window needs are read and
    converted to float, so the cost follows the crop size, not the scaled image size.

    Shapes: image C×H×W (uint8 or float) → C×crop_h×crop_w; label H×W → crop_h×crop_w (dtype
    kept).
    """

    def __init__(
        self,
        crop_size: int | Sequence[int],
        min_scale: float = 0.5,
        max_scale: float = 2.0,
        image_pad: float = 0,
        label_pad: int = IGNORE_INDEX,
    ) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.size = _pair_size(crop_size)
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.image_pad = image_pad
        self.label_pad = label_pad

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator) -> Pair:
        scale = _uniform(generator, self.min_scale, self.max_scale)
        h, w = image.shape[-2:]
        out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
        crop_h, crop_w = self.size
        top = int(torch.randint(0, max(out_h, crop_h) - crop_h + 1, (), generator=generator))
        left = int(torch.randint(0, max(out_w, crop_w) - crop_w + 1, (), generator=generator))
        rows, cols = min(crop_h, out_h - top), min(crop_w, out_w - left)  # inside the image
        if (out_h, out_w) == (h, w):
            window = image[..., top : top + rows, left : left + cols]
            window_label = label[top : top + rows, left : left + cols]
        else:
            window = self._image(image, (top, rows, out_h), (left, cols, out_w))
            ry = _nearest_taps(top, rows, h, out_h)
            rx = _nearest_taps(left, cols, w, out_w)
            # Only the columns the window needs; [ry] (not index_select) is fast on this view.
            x_lo = int(rx[0])
            window_label = label[:, x_lo : int(rx[-1]) + 1][ry]
            window_label = window_label.gather(1, (rx - x_lo).expand(len(ry), len(rx)))
        if (rows, cols) == (crop_h, crop_w):
            return window, window_label
        padded = window.new_full((*window.shape[:-2], crop_h, crop_w), self.image_pad)
        padded[..., :rows, :cols] = window
        padded_label = label.new_full((crop_h, crop_w), self.label_pad)
        padded_label[:rows, :cols] = window_label
        return padded, padded_label

    @staticmethod
    def _image(image: Tensor, rows: tuple[int, int, int], cols: tuple[int, int, int]) -> Tensor:
        """Bilinear window: ``rows``/``cols`` are (first output index, count, scaled size)."""
        h, w = image.shape[-2:]
        y0, y1, wy0, wy1 = _linear_taps(*rows[:2], h, rows[2])
        x0, x1, wx0, wx1 = _linear_taps(*cols[:2], w, cols[2])
        y_lo, x_lo = int(y0[0]), int(x0[0])
        region = image[..., y_lo : int(y1[-1]) + 1, x_lo : int(x1[-1]) + 1]
        # gather with an expanded index is much faster on CPU than index_select along the last
        # dim. Columns first, then rows, each as fma(a, w0, b·w1) (addcmul_ fuses where the CPU
        # has FMA): the arithmetic of PyTorch's generic bilinear kernel, so the sums agree bit for
        # bit with it. (F.interpolate switches to a channels-last kernel with other rounding for
        # one thread and 3 channels, or H' + W' <= 128: then rare pixels differ by 1/255.)
        shape = (*region.shape[:-1], len(x0))
        t = _to_float(region.gather(-1, (x1 - x_lo).expand(shape))).mul_(wx1)
        t.addcmul_(_to_float(region.gather(-1, (x0 - x_lo).expand(shape))), wx0)
        out = t.index_select(-2, y1 - y_lo).mul_(wy1[:, None])
        out.addcmul_(t.index_select(-2, y0 - y_lo), wy0[:, None])
        return _like(out, image)

    def __repr__(self) -> str:
        return f"RandomScaleCrop({self.size}, {self.min_scale}, {self.max_scale})"


class HorizontalFlip:
    """Mirror image and label left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator) -> Pair:
        # The draw happens even for p = 0 or 1, so later transforms see the same random stream.
        if float(torch.rand((), generator=generator)) < self.p:
            return image.flip(-1), label.flip(-1)
        return image, label

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p})"


class ColorJitter:
    """Random brightness, contrast, saturation and (optionally) hue; label unchanged.

    Factors are drawn uniformly from [max(0, 1 - x), 1 + x] for brightness/contrast/saturation
    and applied in that order (brightness scales, contrast blends with the mean grey level,
    saturation blends with the grey image). ``hue`` in [0, 0.5] rotates the chroma plane of
    YIQ by an angle in [-hue, hue]·2π, a cheap linear stand-in for an HSV hue shift.
    """

    def __init__(
        self,
        brightness: float = 0.25,
        contrast: float = 0.25,
        saturation: float = 0.25,
        hue: float = 0.0,
    ) -> None:
        if min(brightness, contrast, saturation, hue) < 0 or hue > 0.5:
            raise ValueError("jitter strengths must be >= 0 and hue <= 0.5")
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue

    def _factor(self, strength: float, generator: torch.Generator) -> float:
        return _uniform(generator, max(0.0, 1.0 - strength), 1.0 + strength)

    def __call__(self, image: Tensor, label: Tensor, generator: torch.Generator) -> Pair:
        x = _to_float(image)
        luma = torch.tensor(_LUMA, dtype=x.dtype).view(3, 1, 1)
        x = x * self._factor(self.brightness, generator)
        grey_mean = (x * luma).sum(0).mean()
        x = grey_mean + (x - grey_mean) * self._factor(self.contrast, generator)
        grey = (x * luma).sum(0, keepdim=True)
        x = grey + (x - grey) * self._factor(self.saturation, generator)
        if self.hue > 0:
            angle = _uniform(generator, -self.hue, self.hue) * 2 * math.pi
            x = _rotate_hue(x, angle)
        return _like(x.clamp_(0.0, 1.0), image), label

    def __repr__(self) -> str:
        return (
            f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue})"
        )


def _rotate_hue(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate the I/Q (chroma) plane of a 3×H×W RGB image by ``angle`` radians."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        dtype=x.dtype,
    )
    cos, sin = math.cos(angle), math.sin(angle)
    rotate = torch.tensor([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]], dtype=x.dtype)
    matrix = torch.linalg.inv(to_yiq) @ rotate @ to_yiq
    return torch.einsum("ij,jhw->ihw", matrix, x)


def train_transforms(
    crop_size: int | Sequence[int],
    scale: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
    jitter: float = 0.25,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Compose:
    """The usual training pipeline: scale and crop (pad 0 / 255; one fused
    :class:`RandomScaleCrop`), flip, colour jitter, normalise.

    Output: image float32 3×crop_h×crop_w (normalised), label int64 crop_h×crop_w.
    """
    steps: list[Transform] = [RandomScaleCrop(crop_size, *scale)]
    if flip:
        steps.append(HorizontalFlip(0.5))
    if jitter > 0:
        steps.append(ColorJitter(jitter, jitter, jitter))
    steps.append(Normalize(mean, std))
    return Compose(steps)


def eval_transforms(
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Compose:
    """Evaluation pipeline: normalise only (full image, no randomness).

    Output: image float32 3×H×W (normalised), label int64 H×W.
    """
    return Compose([Normalize(mean, std)])
