"""Segmentation losses: pixel-wise cross-entropy, OHEM cross-entropy, deep supervision, and the
auxiliary losses of other kinds (PIDNet's boundary loss).

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


def boundary_target(target: torch.Tensor, ignore_index: int = 255, radius: int = 2
                    ) -> torch.Tensor:
    """B×H×W float 0/1 boundary map of a label map B×H×W: 1 where the (2r+1)×(2r+1) window
    around a pixel (clipped at the image border) holds more than one label value.

    A step between two labels gives a band 2r pixels wide, r on each side (r = 2: PIDNet's
    4-pixel band, official ``datasets/base_dataset.py``: Canny edges of the label map dilated
    by a 4×4 kernel). ``ignore_index`` counts as a label value, as it does for Canny on the
    official label map; the losses then leave the ignored pixels themselves out.
    """
    del ignore_index  # a label value like any other here; excluded by the losses
    t = target.unsqueeze(1).float()
    k = 2 * radius + 1
    high = F.max_pool2d(t, k, 1, radius)
    low = -F.max_pool2d(-t, k, 1, radius)
    return (high != low).squeeze(1).float()


def weighted_bce(logits: torch.Tensor, edges: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Class-balanced binary cross-entropy of boundary logits (PIDNet's ``weighted_bce``).

    Args:
        logits: B×1×H×W boundary logits.
        edges: B×H×W 0/1 targets.
        valid: B×H×W bool, the pixels that count.

    Returns ``Σ_valid w_i·BCE_i / N_valid`` with ``w = N_neg/N`` on boundary pixels and
    ``N_pos/N`` on the others (N, N_pos, N_neg counted over the valid pixels of the batch):
    the official formula when no pixel is ignored. 0 (with grad) when no pixel is valid.
    """
    logits = logits.squeeze(1)
    valid = valid.to(logits.dtype)
    pos = (edges * valid).sum()
    neg = valid.sum() - pos
    total = (pos + neg).clamp(min=1)
    weight = torch.where(edges > 0, neg / total, pos / total) * valid
    pixel = F.binary_cross_entropy_with_logits(logits, edges.to(logits.dtype), reduction="none")
    return (pixel * weight).sum() / valid.sum().clamp(min=1)


# The loss of one auxiliary output, by kind: (aux, logits, target) → (loss, extra terms). The
# loss is weighed by the output's aux_weights entry; each extra term is (its own weight,
# unweighted loss), reported as part "aux<i>_<name>". A new kind is one class with this
# call and one AUX_LOSSES entry.
AuxTerms = tuple[torch.Tensor, dict[str, tuple[float, torch.Tensor]]]


class SegAuxLoss:
    """``"seg"``: the criterion of the main output against the labels (aux B×K×H×W)."""

    def __init__(self, criterion: Criterion, ignore_index: int = 255) -> None:
        self.criterion = criterion

    def __call__(self, aux: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> AuxTerms:
        return self.criterion(aux, target), {}


class BoundaryLoss:
    """``"boundary"`` (PIDNet): aux is B×1×H×W boundary logits.

    * loss: :func:`weighted_bce` against :func:`boundary_target` of the labels, ignored pixels
      left out (weight: the model's aux weight, PIDNet's 20);
    * extra term ``"bag"`` (weight ``bag_weight``, PIDNet's 1): the criterion on the *main*
      logits against the labels kept only where ``sigmoid(aux) > threshold`` (0.8), the
      others set to ``ignore_index``. The mask carries no gradient.

    Official: ``utils/criterion.py`` (``weighted_bce``, ``BondaryLoss(coeff_bce=20)``),
    ``utils/utils.py`` (``FullModel``: the 0.8 mask, ``SB_WEIGHTS`` 1.0).
    """

    def __init__(self, criterion: Criterion, ignore_index: int = 255, threshold: float = 0.8,
                 bag_weight: float = 1.0, radius: int = 2) -> None:
        self.criterion, self.ignore_index = criterion, ignore_index
        self.threshold, self.bag_weight, self.radius = threshold, bag_weight, radius

    def __call__(self, aux: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> AuxTerms:
        if aux.dim() != 4 or aux.shape[1] != 1 or aux.shape[-2:] != target.shape[-2:]:
            raise ValueError(f"a boundary output must be B×1×H×W at the label size "
                             f"{tuple(target.shape[-2:])}, got {tuple(aux.shape)}")
        valid = target != self.ignore_index
        bce = weighted_bce(aux, boundary_target(target, self.ignore_index, self.radius), valid)
        with torch.no_grad():
            confident = torch.sigmoid(aux.squeeze(1)) > self.threshold
        bag_target = target.masked_fill(~confident, self.ignore_index)
        return bce, {"bag": (self.bag_weight, self.criterion(logits, bag_target))}


AUX_LOSSES: dict[str, type] = {"seg": SegAuxLoss, "boundary": BoundaryLoss}


class SegLoss(nn.Module):
    """Main loss plus weighted auxiliary (deep-supervision) losses, one kind per output.

    ``total = criterion(logits, target) + Σ_i aux_weights[i] · loss_i + Σ extra terms``, where
    ``loss_i`` is the loss of auxiliary output i's kind (:data:`AUX_LOSSES`): for ``"seg"``
    ``criterion(aux_i, target)``; for ``"boundary"`` :class:`BoundaryLoss` (which adds the
    weighted ``bag`` term on the main logits).

    Args:
        criterion: ``(logits B×K×H×W, target B×H×W) -> scalar``, e.g. :func:`cross_entropy`
            or :class:`OhemCrossEntropy`.
        aux_weights: one weight per auxiliary output of the model, in the model's order.
        aux_kinds: the kind of each auxiliary output (``model.aux_kinds``); None: all
            ``"seg"``.
        ignore_index: the ignored label (the boundary kind's; the criterion has its own).

    Forward:
        ``outputs``: a B×K×H×W tensor (eval-style; only the main loss), or a tuple
        ``(logits, [aux_1, ..., aux_n])`` with every tensor at the label size (``"seg"``
        outputs B×K×H×W, ``"boundary"`` outputs B×1×H×W).
        ``target``: B×H×W int64.

        Returns ``(total, parts)``: ``total`` is the scalar to back-propagate; ``parts`` maps
        ``"main"``, ``"aux1"``, ... ``"auxN"`` (and ``"auxI_<term>"`` for extra terms) to the
        detached, *unweighted* loss of each.

    Raises:
        ValueError: if the number of auxiliary outputs differs from ``len(aux_weights)``, the
            number of kinds from the number of weights, or a kind is unknown.
    """

    def __init__(self, criterion: Criterion, aux_weights: Sequence[float] = (),
                 aux_kinds: Sequence[str] | None = None, ignore_index: int = 255) -> None:
        super().__init__()
        self.criterion = criterion
        self.aux_weights = tuple(float(w) for w in aux_weights)
        kinds = ("seg",) * len(self.aux_weights) if aux_kinds is None else tuple(aux_kinds)
        if len(kinds) != len(self.aux_weights):
            raise ValueError(f"{len(self.aux_weights)} aux_weights {self.aux_weights} but "
                             f"{len(kinds)} aux_kinds {kinds}; they must match one to one")
        unknown = [k for k in kinds if k not in AUX_LOSSES]
        if unknown:
            raise ValueError(f"unknown auxiliary loss kind(s) {unknown}; known: "
                             f"{', '.join(AUX_LOSSES)}")
        self.aux_kinds = kinds
        self.aux_losses = [AUX_LOSSES[k](criterion, ignore_index) for k in kinds]

    def forward(
        self,
        outputs: torch.Tensor | tuple[torch.Tensor, Sequence[torch.Tensor]],
        target: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if isinstance(outputs, torch.Tensor):
            logits, aux, weights, terms = outputs, [], (), []
        else:
            logits, aux = outputs
            aux = list(aux)
            if len(aux) != len(self.aux_weights):
                raise ValueError(
                    f"the model returned {len(aux)} auxiliary outputs but {len(self.aux_weights)}"
                    f" aux_weights were given ({self.aux_weights}); they must match one to one"
                )
            weights, terms = self.aux_weights, self.aux_losses
        total = self.criterion(logits, target)
        parts = {"main": total.detach()}
        for i, (out, weight, term) in enumerate(zip(aux, weights, terms, strict=True), 1):
            aux_loss, extra = term(out, logits, target)
            parts[f"aux{i}"] = aux_loss.detach()
            total = total + weight * aux_loss
            for name, (w, value) in extra.items():
                parts[f"aux{i}_{name}"] = value.detach()
                total = total + w * value
        return total, parts


def build_loss(
    name: str, aux_weights: Sequence[float] = (), ignore_index: int = 255,
    weight: torch.Tensor | None = None, aux_kinds: Sequence[str] | None = None, **kw: float
) -> SegLoss:
    """Build a :class:`SegLoss` from a name.

    Args:
        name: ``"ce"`` (:func:`cross_entropy`, no extra options) or ``"ohem"``
            (:class:`OhemCrossEntropy`; ``kw`` may set ``thresh`` and ``min_kept``).
        aux_weights: weights of the model's auxiliary outputs (``model.aux_weights``).
        ignore_index: label excluded from the loss.
        aux_kinds: the loss kind of each auxiliary output (``model.aux_kinds``; None: all
            ``"seg"``).
        weight: optional K class weights (every output's loss uses them).
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
    return SegLoss(criterion, aux_weights, aux_kinds, ignore_index)
