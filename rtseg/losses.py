"""Segmentation losses: pixel-wise cross-entropy, OHEM cross-entropy, STDC's detail loss, and
deep supervision.

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
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Kinds of auxiliary output a model may declare in ``aux_kinds`` (default: all "seg").
AUX_KINDS = ("seg", "detail")


def _masked_mean(pixel_loss: torch.Tensor, mask: torch.Tensor, target: torch.Tensor,
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
    return _masked_mean(pixel_loss, target != ignore_index, target, weight)


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
        return _masked_mean(pixel_loss, kept, target, self.weight)


# STDC's detail targets (MichaelFan01/STDC-Seg, loss/detail_loss.py): a 3×3 Laplacian of the
# label map at strides 1, 2 and 4, fused with fixed weights.
_LAPLACIAN = ((-1.0, -1.0, -1.0), (-1.0, 8.0, -1.0), (-1.0, -1.0, -1.0))
DETAIL_STRIDES = (1, 2, 4)
DETAIL_FUSE = (0.6, 0.3, 0.1)
DETAIL_THRESHOLD = 0.1


def detail_targets(target: torch.Tensor) -> torch.Tensor:
    """STDC's binary detail (boundary) map of a label map, as the official code computes it.

    For each stride s in 1, 2, 4: ``L_s = max(0, conv2d(labels, Laplacian, stride=s,
    padding=1))`` on the label values (a float copy; zero padding outside the image; ignored
    pixels enter with their label value), brought back to H×W by nearest resizing (s > 1),
    binarised by ``L_s > 0.1``; then ``fused = 0.6·b_1 + 0.3·b_2 + 0.1·b_4`` (float32) and the
    target is ``fused > 0.1``. A pixel is detail where its label exceeds the mean of its 8
    neighbours (only one side of a class boundary, the side of the larger label, and image
    borders of non-zero labels). A pixel marked only at stride 4 fuses to exactly 0.1, not
    above the threshold: with the official weights the stride-4 map adds no pixel of its own.

    Args:
        target: B×H×W integer labels.

    Returns:
        B×1×H×W float32 of 0 and 1.
    """
    if target.dim() != 3:
        raise ValueError(f"expected a B×H×W label map, got {tuple(target.shape)}")
    labels = target.unsqueeze(1).float()
    kernel = torch.tensor(_LAPLACIAN, dtype=labels.dtype, device=labels.device).view(1, 1, 3, 3)
    fused = torch.zeros_like(labels)
    for stride, w in zip(DETAIL_STRIDES, DETAIL_FUSE, strict=True):
        lap = F.conv2d(labels, kernel, stride=stride, padding=1).clamp(min=0)
        if stride > 1:
            lap = F.interpolate(lap, size=labels.shape[-2:], mode="nearest")
        fused = fused + w * (lap > DETAIL_THRESHOLD).to(labels.dtype)
    return (fused > DETAIL_THRESHOLD).to(labels.dtype)


class DetailLoss(nn.Module):
    """STDC's detail loss: BCE + Dice between detail logits and :func:`detail_targets`.

    ``loss = mean_p BCE(x_p, t_p) + mean_b [1 − (2 Σ σ(x)·t + 1) / (Σ σ(x) + Σ t + 1)]``, both
    over the pixels whose label is not ``ignore_index`` (the Dice sums per image, smoothing 1),
    weights 1 and 1 as STDC's ``train.py``. Deviations from the official loss: ignored pixels
    are left out of both terms (the official code counts them, so the border of a void region
    is a detail target there); the fusion weights are constants (the official code keeps them
    in an ``nn.Parameter`` given to the optimiser; no gradient reaches them, every fused value
    being overwritten by the threshold).

    Forward: ``logits`` B×1×H×W (at the label size: the model resizes its detail logits),
    ``target`` B×H×W → scalar; 0 with the graph kept when every pixel is ignored.
    """

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}"

    def parts(self, logits: torch.Tensor, target: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(BCE, Dice) terms."""
        if logits.dim() != 4 or logits.shape[1] != 1 or logits.shape[-2:] != target.shape[-2:] \
                or logits.shape[0] != target.shape[0]:
            raise ValueError(f"expected detail logits B×1×H×W matching the target B×H×W, got "
                             f"{tuple(logits.shape)} and {tuple(target.shape)}")
        t = detail_targets(target).to(logits.dtype)
        valid = (target != self.ignore_index).unsqueeze(1)
        bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
        bce = _masked_mean(bce, valid, target)
        m = valid.to(logits.dtype)
        p, t = (torch.sigmoid(logits) * m).flatten(1), (t * m).flatten(1)
        dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
        return bce, dice.mean()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce, dice = self.parts(logits, target)
        return bce + dice


class SegLoss(nn.Module):
    """Main loss plus weighted auxiliary (deep-supervision) losses.

    ``total = criterion(logits, target) + Σ_i aux_weights[i] · loss_i(aux_i, target)``, where
    ``loss_i`` is ``criterion`` for an output of kind ``"seg"`` and ``detail_criterion`` for
    one of kind ``"detail"`` (STDC's detail head; :class:`DetailLoss`).

    Args:
        criterion: ``(logits B×K×H×W, target B×H×W) -> scalar``, e.g. :func:`cross_entropy`
            or :class:`OhemCrossEntropy`.
        aux_weights: one weight per auxiliary output of the model, in the model's order.
        aux_kinds: the kind of each auxiliary output (``model.aux_kinds``); empty: all "seg".
        detail_criterion: the loss of "detail" outputs (needed when one is listed).

    Forward:
        ``outputs``: a B×K×H×W tensor (eval-style; only the main loss), or a tuple
        ``(logits, [aux_1, ..., aux_n])`` with every tensor at the label size (B×K×H×W, or
        B×1×H×W for a "detail" output).
        ``target``: B×H×W int64.

        Returns ``(total, parts)``: ``total`` is the scalar to back-propagate; ``parts`` maps
        ``"main"``, ``"aux1"``, ... ``"auxN"`` to the detached, *unweighted* loss of each output.

    Raises:
        ValueError: if the number of auxiliary outputs differs from ``len(aux_weights)``, or
            the kinds do not fit the weights.
    """

    def __init__(self, criterion: Criterion, aux_weights: Sequence[float] = (),
                 aux_kinds: Sequence[str] = (), detail_criterion: Criterion | None = None
                 ) -> None:
        super().__init__()
        self.criterion = criterion
        self.aux_weights = tuple(float(w) for w in aux_weights)
        self.aux_kinds = tuple(aux_kinds) or ("seg",) * len(self.aux_weights)
        if len(self.aux_kinds) != len(self.aux_weights):
            raise ValueError(f"{len(self.aux_kinds)} aux_kinds {self.aux_kinds} for "
                             f"{len(self.aux_weights)} aux_weights; they must match one to one")
        unknown = sorted(set(self.aux_kinds) - set(AUX_KINDS))
        if unknown:
            raise ValueError(f"unknown auxiliary output kind(s) {unknown}; known: {AUX_KINDS}")
        if "detail" in self.aux_kinds and detail_criterion is None:
            raise ValueError("a 'detail' auxiliary output needs a detail_criterion")
        self.detail_criterion = detail_criterion

    def forward(
        self,
        outputs: torch.Tensor | tuple[torch.Tensor, Sequence[torch.Tensor]],
        target: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if isinstance(outputs, torch.Tensor):
            logits, aux, weights = outputs, [], ()
        else:
            logits, aux = outputs
            aux = list(aux)
            if len(aux) != len(self.aux_weights):
                raise ValueError(
                    f"the model returned {len(aux)} auxiliary outputs but {len(self.aux_weights)}"
                    f" aux_weights were given ({self.aux_weights}); they must match one to one"
                )
            weights = self.aux_weights
        total = self.criterion(logits, target)
        parts = {"main": total.detach()}
        for i, (aux_logits, weight, kind) in enumerate(
                zip(aux, weights, self.aux_kinds[:len(aux)], strict=True), 1):
            loss = self.detail_criterion if kind == "detail" else self.criterion
            aux_loss = loss(aux_logits, target)
            parts[f"aux{i}"] = aux_loss.detach()
            total = total + weight * aux_loss
        return total, parts


def build_loss(
    name: str, aux_weights: Sequence[float] = (), ignore_index: int = 255,
    weight: torch.Tensor | None = None, aux_kinds: Sequence[str] = (), **kw: float
) -> SegLoss:
    """Build a :class:`SegLoss` from a name.

    Args:
        name: ``"ce"`` (:func:`cross_entropy`, no extra options) or ``"ohem"``
            (:class:`OhemCrossEntropy`; ``kw`` may set ``thresh`` and ``min_kept``).
        aux_weights: weights of the model's auxiliary outputs (``model.aux_weights``).
        ignore_index: label excluded from the loss.
        weight: optional K class weights (every seg output's loss uses them).
        aux_kinds: the kind of each auxiliary output (``model.aux_kinds``; empty: all "seg");
            a "detail" output gets :class:`DetailLoss` with this ``ignore_index``.
    """
    if name == "ce":
        if kw:
            raise TypeError(f"loss 'ce' takes no options, got {sorted(kw)}")
        criterion: Criterion = partial(cross_entropy, ignore_index=ignore_index, weight=weight)
    elif name == "ohem":
        unknown = set(kw) - {"thresh", "min_kept"}
        if unknown:
            raise TypeError(f"loss 'ohem' got unknown options {sorted(unknown)}")
        if "min_kept" in kw:
            kw["min_kept"] = int(kw["min_kept"])
        criterion = OhemCrossEntropy(ignore_index=ignore_index, weight=weight, **kw)
    else:
        raise ValueError(f"unknown loss {name!r}; use 'ce' or 'ohem'")
    detail = DetailLoss(ignore_index) if "detail" in aux_kinds else None
    return SegLoss(criterion, aux_weights, aux_kinds, detail)
