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

from .io import Transform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IGNORE_INDEX = 255

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
    """The usual training pipeline: scale, crop (pad 0 / 255), flip, colour jitter, normalise.

    Output: image float32 3×crop_h×crop_w (normalised), label int64 crop_h×crop_w.
    """
    steps: list[Transform] = [RandomScale(*scale), RandomCrop(crop_size)]
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
