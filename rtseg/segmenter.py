"""A trained model behind one call: ``rtseg.load(path)(image)`` → class indices.

:class:`Segmenter` owns what inference needs besides the weights: the class names, the palette,
the input normalisation and the test-time options (whole image or sliding windows, scales,
horizontal flip). It takes an image in any usual form and returns labels at the input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import viz
from .errors import UsageError
from .inference.tta import TTAOptions, predict_probs
from .utils import IMAGENET_MEAN, IMAGENET_STD, resolve_device

ImageLike = Any  # np.ndarray H×W×3 uint8 | PIL.Image | str | Path | torch.Tensor (B×)3×H×W


class Segmenter:
    """Labels for images from an eval-mode model.

    Args:
        model: ``model(x B×3×H×W)`` → B×K×h×w logits in eval mode.
        classes: K class names.
        palette: K RGB colours.
        device: where the model runs (``"auto"``: CUDA when available).
        mean, std: the normalisation the model was trained with, in [0, 1] units.
        name: the model's name, for messages.
        **options: default test-time options of :func:`rtseg.inference.tta.predict_probs`
            (``mode``, ``crop``, ``stride``, ``scales``, ``flip``, ``short_side``,
            ``long_side``, ``window_average``); each call may override them.

    Images: an H×W×3 uint8 numpy array (RGB; also grey, RGBA, uint16 or float in [0, 1]), a PIL
    image, a path to an image file, or a tensor 3×H×W / B×3×H×W, uint8 (0–255) or float in
    [0, 1] (torchvision's convention; a float tensor outside [0, 1] is refused). Paths and PIL
    images are turned upright by their EXIF orientation, as viewers show them, so the labels
    are at that size. All are normalised with ``mean``/``std`` here.
    """

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[str],
        palette: Sequence[Sequence[int]],
        device: str | torch.device = "auto",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        name: str = "model",
        **options: Any,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.classes, self.name = list(classes), name
        self.palette = [tuple(int(v) for v in c) for c in palette]
        self.mean, self.std = tuple(mean), tuple(std)
        self.options = check_options({"mode": "whole", "scales": (1.0,), **options})
        self._state = None  # a temporal model's past frames (see stream)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (f"Segmenter({self.name}, {self.num_classes} classes, {self.device}, "
                f"options={self.options})")

    # ---- inference

    def __call__(self, image: ImageLike, **options: Any) -> np.ndarray | torch.Tensor:
        """Class indices at the input size: H×W (uint8 numpy) for one image given as numpy,
        PIL or a path; H×W or B×H×W (int64 tensor, on CPU) for a tensor input."""
        x, batched, as_tensor = self._prepare(image)
        return self._labels(self._scores(x, options), batched, as_tensor)

    def _labels(self, scores: torch.Tensor, batched: bool,
                as_tensor: bool) -> np.ndarray | torch.Tensor:
        """Argmax of B×K×H×W scores, shaped and typed as the input was given."""
        labels = scores.argmax(1).cpu()
        labels = labels if batched else labels[0]
        if as_tensor:
            return labels
        return labels.numpy().astype(np.uint8 if self.num_classes <= 256 else np.int32)

    def logits(self, image: ImageLike, **options: Any) -> torch.Tensor:
        """Per-class scores B×K×H×W (or K×H×W) at the input size, on the segmenter's device.

        With one whole-image pass (the default) these are the model's logits exactly; with
        several scales, a flip or sliding windows they are the log of the averaged softmax
        probabilities (the same argmax as the averaged probabilities).
        """
        x, batched, _ = self._prepare(image)
        scores = self._scores(x, options)
        return scores if batched else scores[0]

    @torch.no_grad()
    def _scores(self, x: torch.Tensor, options: dict[str, Any]) -> torch.Tensor:
        opts = TTAOptions.from_mapping({**self.options, **options})
        if opts.single_pass:
            logits = self.model(x)
            if logits.shape[-2:] != x.shape[-2:]:
                from .layers import resize

                logits = resize(logits, x.shape[-2:])
            return logits
        probs = predict_probs(self.model, x, opts, num_classes=self.num_classes)
        return probs.clamp_min(1e-12).log()

    def _prepare(self, image: ImageLike) -> tuple[torch.Tensor, bool, bool]:
        """Normalised B×3×H×W float input on the device, whether a batch was given, and
        whether the input was a tensor."""
        as_tensor = isinstance(image, torch.Tensor)
        if as_tensor:
            x = image
        else:
            x = torch.from_numpy(np.ascontiguousarray(to_rgb_array(image))).permute(2, 0, 1)
        batched = x.dim() == 4
        if x.dim() == 3:
            x = x[None]
        if x.dim() != 4 or x.shape[1] != 3:
            raise UsageError(f"expected an image 3×H×W or B×3×H×W, got shape {tuple(x.shape)}")
        x = _unit_float(x.to(self.device))
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std, batched, as_tensor

    # ---- video

    def reset(self) -> None:
        """Forget the frames seen by :meth:`stream` (start of a new video)."""
        self._state = None

    @torch.no_grad()
    def stream(self, frame: ImageLike) -> np.ndarray | torch.Tensor:
        """Labels of the next video frame. A temporal model (FANet +Temp) attends over the
        frames streamed before it (its state is kept here; :meth:`reset` between videos);
        any other model predicts the frame alone. One whole-image pass, no test-time options.
        """
        if not getattr(self.model, "temporal", False):
            return self(frame)
        x, batched, as_tensor = self._prepare(frame)
        logits, self._state = self.model.step(x, self._state)
        return self._labels(logits, batched, as_tensor)

    # ---- pictures

    def colorize(self, labels: np.ndarray | torch.Tensor) -> np.ndarray:
        """Class indices (…×H×W) → palette colours (…×H×W×3 uint8)."""
        if isinstance(labels, torch.Tensor):
            labels = labels.cpu().numpy()
        return viz.colorize(labels, self.palette)

    def overlay(self, image: ImageLike, labels: np.ndarray | torch.Tensor,
                alpha: float = 0.5) -> np.ndarray:
        """The prediction's colours blended over the image (H×W×3 uint8)."""
        return viz.overlay(to_rgb_array(image), self.colorize(labels), alpha)


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Test-time options (a subset, by name) checked and normalised by :class:`TTAOptions`
    (``scales`` a tuple, ``crop``/``stride`` pairs of positive ints); UsageError naming the
    first bad one."""
    checked = TTAOptions.from_mapping(options).as_dict()
    return {k: checked[k] for k in options}


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """H×W×3 uint8 RGB from a numpy array, a PIL image, an image path or a 3×H×W tensor.

    Paths and PIL images are turned upright by their EXIF orientation; every form follows the
    mode rules of :mod:`rtseg.data.images` (16-bit scaled, alpha dropped, floats in [0, 1]).
    """
    from .data.images import rgb_from_array, rgb_from_pil, upright

    if isinstance(image, (str, Path)):
        from .data.io import read_image

        return read_image(image, upright=True).permute(1, 2, 0).numpy()
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise UsageError(f"expected a 3×H×W image tensor, got shape {tuple(image.shape)}")
        return _unit_float(image).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    if isinstance(image, np.ndarray):
        return rgb_from_array(image)
    from PIL import Image

    if isinstance(image, Image.Image):
        return rgb_from_pil(upright(image))
    raise UsageError(f"cannot read an image from {type(image).__name__}; give a numpy "
                     "array, a PIL image, a path or a tensor")


def _unit_float(x: torch.Tensor) -> torch.Tensor:
    """A uint8 (0–255) or float ([0, 1]) image tensor as float in [0, 1]; UsageError for a
    float tensor outside [0, 1] (a 0–255 float image, a normalised one) or another dtype."""
    from .data.images import check_unit_range

    if x.dtype == torch.uint8:
        return x.float().div_(255)
    if not x.is_floating_point():
        raise UsageError(f"expected a uint8 (0–255) or float ([0, 1]) image tensor, got "
                         f"{x.dtype}")
    x = x.float()
    if x.numel():
        low, high = torch.aminmax(x)
        check_unit_range(float(low), float(high), "float image tensor")
    return x.clamp(0, 1)
