"""Pixel-wise segmentation losses: cross-entropy and OHEM cross-entropy, optionally class-weighted.

Shapes: logits are B×K×H×W, targets B×H×W int64 class indices, ``ignore_index`` marks pixels
that never contribute to a loss. Every loss here is a mean over the pixels it counts; when no
pixel counts (an all-ignore batch) it is a zero that still carries the graph, not NaN.

Class weights (optional, K values): a counted pixel of class c weighs ``w_c`` and the mean is
``Σ w_{y_i} ℓ_i / Σ w_{y_i}`` (PyTorch's weighted ``cross_entropy`` mean). OHEM still selects
its hard pixels by the unweighted probability of the true class. :func:`class_weights` makes
the two published frequency weightings from pixel counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def masked_mean(pixel_loss: torch.Tensor, mask: torch.Tensor, target: torch.Tensor,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``pixel_loss`` over ``mask``, weighted by ``weight[target]`` when given; 0 (with
    grad) when the mask is empty."""
    mask = mask.to(pixel_loss.dtype)
    if weight is not None:
        mask = mask * weight.to(pixel_loss)[target.clamp(0, weight.numel() - 1)]
    return (pixel_loss * mask).sum() / mask.sum().clamp(min=torch.finfo(mask.dtype).tiny)


def class_weights(method: str, pixels: torch.Tensor, image_pixels: torch.Tensor) -> torch.Tensor:
    """Per-class loss weights from label statistics of the training set.

    Args:
        method: ``"inverse_log_frequency"``: ``w_c = 1 / ln(1.02 + p_c)``, ``p_c`` the share of
            all labelled pixels that are class c (ENet, Paszke et al. 2016, §5.1);
            ``"median_frequency"``: ``w_c = median(f) / f_c``, ``f_c`` = class-c pixels over the
            pixels of the images that contain class c (SegNet on CamVid, Badrinarayanan et al.
            2017, after Eigen & Fergus 2015).
        pixels: K, labelled pixels of each class.
        image_pixels: K, total pixels of the images in which each class occurs.

    Returns:
        K float32 weights; a class with no pixel gets the largest weight of the others (it
        never occurs in the targets, so its weight only matters for new data).
    """
    pixels, image_pixels = pixels.double(), image_pixels.double()
    if pixels.sum() <= 0:
        raise ValueError("class weights need labelled pixels; the training labels hold none")
    present = pixels > 0
    if method == "inverse_log_frequency":
        w = 1.0 / torch.log(1.02 + pixels / pixels.sum())
    elif method == "median_frequency":
        freq = pixels / image_pixels.clamp(min=1)
        w = freq[present].median() / freq.clamp(min=torch.finfo(freq.dtype).tiny)
    else:
        raise ValueError(f"unknown class weighting {method!r}; use 'inverse_log_frequency' or "
                         "'median_frequency'")
    w = torch.where(present, w, w[present].max())
    return w.float()


def _check_shapes(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.dim() != 4 or target.dim() != 3:
        raise ValueError(
            f"expected logits B×K×H×W and target B×H×W, got {tuple(logits.shape)} and "
            f"{tuple(target.shape)}"
        )
    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} do not match target {tuple(target.shape)}: "
            "resize the logits to the label size first"
        )


def cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean pixel-wise cross-entropy over the non-ignored pixels.

    Args:
        logits: B×K×H×W raw scores.
        target: B×H×W int64 class indices in ``[0, K)`` or ``ignore_index``.
        ignore_index: label that is excluded from the mean.
        weight: optional K class weights (a weighted mean, as ``F.cross_entropy``'s).

    Returns:
        A scalar; 0 when every pixel is ignored.
    """
    _check_shapes(logits, target)
    pixel_loss = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    return masked_mean(pixel_loss, target != ignore_index, target, weight)


class OhemCrossEntropy(nn.Module):
    """Cross-entropy over the hard pixels only (online hard example mining).

    A non-ignored pixel is *hard* when the softmax probability of its true class is below
    ``thresh``, i.e. its cross-entropy exceeds ``-ln(thresh)``. The loss is the mean
    cross-entropy over the kept pixels, which are:

    * all hard pixels, if there are at least ``min_kept`` of them;
    * otherwise the ``min_kept`` non-ignored pixels with the largest cross-entropy (all hard
      pixels are among them, since every hard pixel has a larger loss than every easy one),
      or every non-ignored pixel when fewer than ``min_kept`` exist. Ties at the cut are
      broken arbitrarily.

    ``min_kept`` counts pixels of the **whole batch** passed to one call (under DDP: of one
    process's batch), not per image. Ignored pixels are never kept.

    Args:
        thresh: probability threshold in (0, 1].
        min_kept: minimum number of kept pixels per batch (>= 0).
        ignore_index: label that is never kept.
        weight: optional K class weights of the mean over the kept pixels.

    Forward: ``logits`` B×K×H×W, ``target`` B×H×W → scalar.
    """

    def __init__(self, thresh: float = 0.7, min_kept: int = 100000, ignore_index: int = 255,
                 weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight),
                             persistent=False)
        if not 0.0 < thresh <= 1.0:
            raise ValueError(f"thresh must be in (0, 1], got {thresh}")
        if min_kept < 0:
            raise ValueError(f"min_kept must be >= 0, got {min_kept}")
        self.thresh = thresh
        self.min_kept = min_kept
        self.ignore_index = ignore_index

    def extra_repr(self) -> str:
        return f"thresh={self.thresh}, min_kept={self.min_kept}, ignore_index={self.ignore_index}"

    def _select(self, pixel_loss: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Kept-pixel mask (same shape as ``pixel_loss``) from detached per-pixel losses."""
        kept = valid & (pixel_loss > -math.log(self.thresh))
        num_valid = int(valid.sum())
        k = min(self.min_kept, num_valid)
        if int(kept.sum()) >= k:
            return kept
        # Too few hard pixels: take the k hardest valid ones instead.
        scores = pixel_loss.masked_fill(~valid, -1.0).flatten()  # CE >= 0 > -1
        top = torch.topk(scores, k).indices
        kept = torch.zeros_like(scores, dtype=torch.bool)
        kept[top] = True
        return kept.view_as(valid)

    @torch.no_grad()
    def kept_mask(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """B×H×W bool: the pixels :meth:`forward` averages over for these inputs."""
        _check_shapes(logits, target)
        pixel_loss = F.cross_entropy(
            logits, target, ignore_index=self.ignore_index, reduction="none"
        )
        return self._select(pixel_loss, target != self.ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_shapes(logits, target)
        pixel_loss = F.cross_entropy(
            logits, target, ignore_index=self.ignore_index, reduction="none"
        )
        kept = self._select(pixel_loss.detach(), target != self.ignore_index)
        return masked_mean(pixel_loss, kept, target, self.weight)
