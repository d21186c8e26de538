"""Segmentation losses: pixel-wise cross-entropy and OHEM (:mod:`.pixel`), Lovász-softmax
(:mod:`.lovasz`), the losses of auxiliary outputs by kind (:mod:`.auxiliary`), and
:class:`SegLoss`, which adds them up.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from .auxiliary import (
    AUX_LOSSES,
    BoundaryLoss,
    DetailLoss,
    boundary_target,
    detail_targets,
    weighted_bce,
)
from .lovasz import lovasz_softmax
from .pixel import Criterion, OhemCrossEntropy, class_weights, cross_entropy


class SegLoss(nn.Module):
    """Main loss plus weighted auxiliary (deep-supervision) losses, one kind per output.

    ``total = criterion(logits, target) + lovasz_weight · lovasz_softmax(logits, target)
    + Σ_i aux_weights[i] · loss_i + Σ extra terms``, where
    ``loss_i`` is the loss of auxiliary output i's kind (:data:`AUX_LOSSES`): for ``"seg"``
    ``criterion(aux_i, target)``; for ``"boundary"`` :class:`BoundaryLoss` (which adds the
    weighted ``bag`` term on the main logits); for ``"detail"`` STDC's :class:`DetailLoss`.

    Args:
        criterion: ``(logits B×K×H×W, target B×H×W) -> scalar``, e.g. :func:`cross_entropy`
            or :class:`OhemCrossEntropy`.
        aux_weights: one weight per auxiliary output of the model, in the model's order.
        aux_kinds: the kind of each auxiliary output (``model.aux_kinds``); None: all
            ``"seg"``.
        ignore_index: the ignored label (the boundary kind's and Lovász's; the criterion has
            its own).
        lovasz_weight: weight of :func:`~rtseg.losses.lovasz.lovasz_softmax` on the main
            logits only (0: not computed).

    Forward:
        ``outputs``: a B×K×H×W tensor (eval-style; only the main loss), or a tuple
        ``(logits, [aux_1, ..., aux_n])`` with every tensor at the label size (``"seg"``
        outputs B×K×H×W, ``"boundary"`` and ``"detail"`` outputs B×1×H×W).
        ``target``: B×H×W int64.

        Returns ``(total, parts)``: ``total`` is the scalar to back-propagate; ``parts`` maps
        ``"main"``, ``"lovasz"`` (when weighted), ``"aux1"``, ... ``"auxN"`` (and
        ``"auxI_<term>"`` for extra terms) to the
        detached, *unweighted* loss of each.

    Raises:
        ValueError: if the number of auxiliary outputs differs from ``len(aux_weights)``, the
            number of kinds from the number of weights, or a kind is unknown.
    """

    def __init__(self, criterion: Criterion, aux_weights: Sequence[float] = (),
                 aux_kinds: Sequence[str] | None = None, ignore_index: int = 255,
                 lovasz_weight: float = 0.0) -> None:
        super().__init__()
        if lovasz_weight < 0:
            raise ValueError(f"lovasz_weight must be >= 0, got {lovasz_weight}")
        self.criterion = criterion
        self.lovasz_weight = float(lovasz_weight)
        self.ignore_index = ignore_index
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
        if self.lovasz_weight:
            lovasz = lovasz_softmax(logits, target, self.ignore_index)
            parts["lovasz"] = lovasz.detach()
            total = total + self.lovasz_weight * lovasz
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
    weight: torch.Tensor | None = None, aux_kinds: Sequence[str] | None = None,
    lovasz_weight: float = 0.0, **kw: float
) -> SegLoss:
    """Build a :class:`SegLoss` from a name.

    Args:
        name: ``"ce"`` (:func:`cross_entropy`, no extra options) or ``"ohem"``
            (:class:`OhemCrossEntropy`; ``kw`` may set ``thresh`` and ``min_kept``).
        aux_weights: weights of the model's auxiliary outputs (``model.aux_weights``).
        ignore_index: label excluded from the loss.
        aux_kinds: the loss kind of each auxiliary output (``model.aux_kinds``; None: all
            ``"seg"``).
        weight: optional K class weights (every output's cross-entropy uses them).
        lovasz_weight: adds ``lovasz_weight ·`` Lovász-softmax of the main logits.
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
    return SegLoss(criterion, aux_weights, aux_kinds, ignore_index, lovasz_weight)


__all__ = [
    "AUX_LOSSES", "BoundaryLoss", "Criterion", "DetailLoss", "OhemCrossEntropy", "SegLoss",
    "boundary_target", "build_loss", "class_weights", "cross_entropy", "detail_targets",
    "lovasz_softmax", "weighted_bce",
]
