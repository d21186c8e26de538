"""Test-time prediction: whole-image or sliding-window, multi-scale, horizontal flip, and
ADE20K's protocol of predicting at a fixed shorter side. The options are one checked object,
:class:`TTAOptions`, carried from the Segmenter, ``rtseg.evaluate`` and the trainer's validation
to :func:`predict_probs`."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UsageError
from ..layers import resize

WINDOW_AVERAGES = ("probs", "logits")


def _pair(key: str, value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                 and v > 0 for v in pair):
        raise UsageError(f"{key} must be two positive integers (h, w), got {value!r}")
    return (int(pair[0]), int(pair[1]))


@dataclass(frozen=True)
class TTAOptions:
    """Test-time options, checked and normalised once (:class:`UsageError` naming the first bad
    one); see :func:`predict_probs` for what each does.

    ``crop``/``stride`` become (h, w) pairs (an int: a square), ``scales`` a tuple of floats.
    """

    mode: str = "whole"
    crop: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    short_side: int | None = None
    long_side: int | None = None
    window_average: str = "probs"

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.mode not in ("whole", "slide"):
            raise UsageError(f"mode must be 'whole' or 'slide', got {self.mode!r}")
        put("crop", _pair("crop", self.crop))
        put("stride", _pair("stride", self.stride))
        if self.mode == "slide" and not self.crop:
            raise UsageError("mode='slide' needs crop=(h, w)")
        if self.stride is not None and self.mode != "slide":
            raise UsageError("stride applies to mode='slide' only")
        scales = self.scales
        scales = (scales,) if isinstance(scales, (int, float)) else tuple(scales or ())
        if not scales or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                 and v > 0 for v in scales):
            raise UsageError(f"scales must be positive numbers, got {self.scales!r}")
        put("scales", tuple(float(v) for v in scales))
        put("flip", bool(self.flip))
        put("short_side", check_short_side(self.short_side))
        put("long_side", check_short_side(self.long_side, "long_side"))
        if self.long_side is not None and self.short_side is None:
            raise UsageError("long_side caps a short_side resize; give short_side too")
        if self.window_average not in WINDOW_AVERAGES:
            raise UsageError(f"window_average must be 'probs' or 'logits', got "
                             f"{self.window_average!r}")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> TTAOptions:
        """From a mapping of option names (a subset); unknown names are a :class:`UsageError`."""
        unknown = sorted(set(options) - set(TTA_OPTIONS))
        if unknown:
            raise UsageError(f"unknown inference option(s) {', '.join(unknown)}; "
                             f"valid: {', '.join(TTA_OPTIONS)}")
        return cls(**options)

    def replace(self, **changes: Any) -> TTAOptions:
        """These options with ``changes`` applied (checked again)."""
        return TTAOptions.from_mapping({**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def single_pass(self) -> bool:
        """One whole-image pass at the input size (no scales, flip or resize)."""
        return (self.mode == "whole" and self.scales == (1.0,) and not self.flip
                and self.short_side is None)


TTA_OPTIONS = tuple(f.name for f in dataclasses.fields(TTAOptions))


def _probs(model: nn.Module, x: torch.Tensor, flip: bool, num_classes: int | None,
           logits_out: bool = False) -> torch.Tensor:
    """Softmax of ``model(x)`` (B×K×h×w at x's size), averaged with the flipped pass if asked;
    with ``logits_out`` the logits themselves (averaged alike) instead."""
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
        p = resize(logits if logits_out else logits.softmax(1), x.shape[-2:])
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
    window_average: str = "probs",
) -> torch.Tensor:
    """Sliding-window probabilities B×K×h×w for x B×3×h×w: the windows' probabilities
    averaged per pixel, or (``window_average="logits"``) the softmax of their averaged logits."""
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
            p = _probs(model, x[..., y0 : y0 + ch, x0 : x0 + cw], flip, num_classes,
                       logits_out=window_average == "logits")
            if total is None:
                total = x.new_zeros(x.shape[0], p.shape[1], ph, pw)
            total[..., y0 : y0 + ch, x0 : x0 + cw] += p
            count[..., y0 : y0 + ch, x0 : x0 + cw] += 1
    mean = (total / count)[..., :h, :w]
    return mean.softmax(1) if window_average == "logits" else mean


def check_short_side(short_side: int | None, name: str = "short_side") -> int | None:
    """``short_side`` (or the option ``name``) as an int (None stays None); UsageError unless
    a positive integer."""
    if short_side is None:
        return None
    if isinstance(short_side, bool) or not isinstance(short_side, numbers.Integral) \
            or short_side < 1:
        raise UsageError(f"{name} must be a positive integer, got {short_side!r}")
    return int(short_side)


def short_side_size(size: Sequence[int], short_side: int,
                    long_side: int | None = None) -> tuple[int, int]:
    """(h, w) of an image of ``size`` (H, W) resized so that its shorter side is
    ``short_side``, aspect ratio kept (the longer side rounded to the nearest pixel); with
    ``long_side``, the factor is lowered where needed so that the longer side is at most
    ``long_side`` (mmsegmentation's ``Resize(scale=(2048, 512), keep_ratio=True)``)."""
    short_side = check_short_side(short_side)
    h, w = int(size[0]), int(size[1])
    factor = short_side / min(h, w)
    if long_side is not None:
        factor = min(factor, check_short_side(long_side, "long_side") / max(h, w))
    return max(round(h * factor), 1), max(round(w * factor), 1)


@torch.no_grad()
def predict_probs(
    model: nn.Module,
    image: torch.Tensor,
    options: TTAOptions | None = None,
    num_classes: int | None = None,
    **changes: Any,
) -> torch.Tensor:
    """Class probabilities of ``image`` averaged over scales, flips and windows.

    For each scale ``s`` the image is resized (bilinear, ``align_corners=False``) to
    ``round(s·H) × round(s·W)``, predicted whole or by sliding windows, optionally also
    mirrored left-right (and the prediction mirrored back), the softmax probabilities resized
    back to H×W; the result is the plain mean over scales × flips.

    With ``short_side`` the base size is not H×W but H×W scaled so that the shorter side is
    ``short_side`` (aspect ratio kept, the longer side rounded): ADE20K's usual protocol
    (``short_side=512``) predicts there and scores the probabilities resized back to H×W.
    ``long_side`` caps the longer side of that base size (mmsegmentation's ADE20K test resize,
    ``(2048, 512)`` with ``keep_ratio``, is ``short_side=512, long_side=2048``).
    Scales then multiply that base size. (GAIN's own test code resizes the image bicubically
    and pads it to a multiple of 32; rtseg resizes bilinearly and does not pad.)

    Sliding windows: a ``crop``-sized window moves by ``stride``; the last window of a row or
    column is shifted back to end at the image edge, so every pixel is covered; an image (at
    some scale) smaller than the crop is zero-padded at the bottom/right first. Overlapping
    windows are averaged per pixel (sum of window probabilities / number of windows); with
    ``window_average="logits"`` the windows' logits are averaged so and the softmax taken after
    (mmsegmentation's ``slide_inference``). Scales and flips are always averaged as
    probabilities.

    Args:
        model: in eval mode (the caller's job); ``model(x B×3×h×w)`` → logits B×K×h×w. Logits of
            another size are resized to the input size.
        image: B×3×H×W normalised input, or a B×T×3×H×W clip for a temporal model (every
            frame is scaled, flipped and windowed alike; the model predicts the last).
        options: :class:`TTAOptions` (default: one whole pass):
            ``mode`` ``"whole"`` or ``"slide"``; ``crop`` the (h, w) window, required for
            ``"slide"``; ``stride`` its step (default ``crop``: no overlap); ``scales`` input
            scale factors; ``flip`` also the mirrored image; ``short_side`` the size of the
            shorter side the image is predicted at; ``long_side`` with it, the most the longer
            side may be; ``window_average`` ``"probs"`` or ``"logits"``: what overlapping
            windows average.
        num_classes: if given, the model's K is checked against it.
        **changes: options given by name, applied over ``options``.

    Returns:
        B×K×H×W probabilities (each pixel sums to 1), on the image's device.
    """
    if image.dim() not in (4, 5):
        raise ValueError(f"expected a B×3×H×W image or B×T×3×H×W clip, got shape "
                         f"{tuple(image.shape)}")
    o = options or TTAOptions()
    if changes:
        o = o.replace(**changes)
    crop, stride = o.crop, o.stride or o.crop
    size = image.shape[-2:]
    base = size if o.short_side is None else short_side_size(size, o.short_side, o.long_side)
    total = None
    for s in o.scales:
        scaled_size = (max(round(base[0] * s), 1), max(round(base[1] * s), 1))
        x = resize(image, scaled_size)
        if o.mode == "whole":
            p = _probs(model, x, o.flip, num_classes)
        else:
            p = _slide(model, x, crop, stride, o.flip, num_classes, o.window_average)
        p = resize(p, size)
        total = p if total is None else total + p
    return total / len(o.scales)


predict_logits = predict_probs  # one-release alias: the old name, though it returns probabilities
