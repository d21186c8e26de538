"""Test-time prediction: whole-image or sliding-window, multi-scale, horizontal flip."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import resize


def _probs(model: nn.Module, x: torch.Tensor, flip: bool, num_classes: int | None) -> torch.Tensor:
    """Softmax of ``model(x)`` (B×K×h×w at x's size), averaged with the flipped pass if asked."""
    outputs = [model(x)]
    if flip:
        outputs.append(model(x.flip(-1)).flip(-1))
    total = None
    for logits in outputs:
        if logits.dim() != 4 or logits.shape[0] != x.shape[0]:
            raise ValueError(
                f"the model must return B×K×h×w logits in eval mode, got {tuple(logits.shape)}"
                f" for input {tuple(x.shape)} (call model.eval() first)"
            )
        if num_classes is not None and logits.shape[1] != num_classes:
            raise ValueError(f"the model returned {logits.shape[1]} classes, not {num_classes}")
        p = resize(logits.softmax(1), x.shape[-2:])
        total = p if total is None else total + p
    return total / len(outputs)


def _window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window offsets along one axis covering ``[0, size)``; the last window ends at ``size``."""
    count = math.ceil((size - crop) / stride) + 1
    return [min(i * stride, size - crop) for i in range(count)]


def _slide(
    model: nn.Module,
    x: torch.Tensor,
    crop: tuple[int, int],
    stride: tuple[int, int],
    flip: bool,
    num_classes: int | None,
) -> torch.Tensor:
    """Sliding-window probabilities B×K×h×w for x B×3×h×w."""
    h, w = x.shape[-2:]
    ch, cw = crop
    # Pad bottom/right up to one crop so every window is full size; cut off again below.
    pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    ph, pw = x.shape[-2:]
    total = None
    count = x.new_zeros(1, 1, ph, pw)
    for y0 in _window_starts(ph, ch, stride[0]):
        for x0 in _window_starts(pw, cw, stride[1]):
            p = _probs(model, x[..., y0 : y0 + ch, x0 : x0 + cw], flip, num_classes)
            if total is None:
                total = x.new_zeros(x.shape[0], p.shape[1], ph, pw)
            total[..., y0 : y0 + ch, x0 : x0 + cw] += p
            count[..., y0 : y0 + ch, x0 : x0 + cw] += 1
    return (total / count)[..., :h, :w]


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    image: torch.Tensor,
    mode: str = "whole",
    crop: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Class probabilities of ``image`` averaged over scales, flips and windows.

    For each scale ``s`` the image is resized (bilinear, ``align_corners=False``) to
    ``round(s·H) × round(s·W)``, predicted whole or by sliding windows, optionally also
    mirrored left-right (and the prediction mirrored back), the softmax probabilities resized
    back to H×W; the result is the plain mean over scales × flips.

    Sliding windows: a ``crop``-sized window moves by ``stride``; the last window of a row or
    column is shifted back to end at the image edge, so every pixel is covered; an image (at
    some scale) smaller than the crop is zero-padded at the bottom/right first. Overlapping
    windows are averaged per pixel (sum of window probabilities / number of windows).

    Args:
        model: in eval mode (the caller's job); ``model(x B×3×h×w)`` → logits B×K×h×w. Logits of
            another size are resized to the input size.
        image: B×3×H×W normalised input.
        mode: ``"whole"`` or ``"slide"``.
        crop: (h, w) window size; required for ``"slide"``.
        stride: (h, w) window step; defaults to ``crop`` (no overlap) for ``"slide"``.
        scales: input scale factors.
        flip: also predict the horizontally mirrored image.
        num_classes: if given, the model's K is checked against it.

    Returns:
        B×K×H×W probabilities (each pixel sums to 1), on the image's device.
    """
    if image.dim() != 4:
        raise ValueError(f"expected a B×3×H×W image, got shape {tuple(image.shape)}")
    if mode not in ("whole", "slide"):
        raise ValueError(f"unknown mode {mode!r}; use 'whole' or 'slide'")
    if not scales:
        raise ValueError("scales must not be empty")
    if mode == "slide":
        if crop is None:
            raise ValueError("mode='slide' needs crop=(h, w)")
        crop = (int(crop[0]), int(crop[1]))
        stride = crop if stride is None else (int(stride[0]), int(stride[1]))
        if min(crop) < 1 or min(stride) < 1:
            raise ValueError(f"crop {crop} and stride {stride} must be positive")

    size = image.shape[-2:]
    total = None
    for s in scales:
        if s <= 0:
            raise ValueError(f"scales must be positive, got {s}")
        scaled_size = (max(round(size[0] * s), 1), max(round(size[1] * s), 1))
        x = resize(image, scaled_size)
        if mode == "whole":
            p = _probs(model, x, flip, num_classes)
        else:
            p = _slide(model, x, crop, stride, flip, num_classes)
        p = resize(p, size)
        total = p if total is None else total + p
    return total / len(scales)
