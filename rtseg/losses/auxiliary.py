"""The losses of auxiliary outputs by kind: what a model's ``aux_kinds`` names.

Each kind is a class called as ``term(aux, logits, target) -> (loss, extra terms)``: the loss is
weighed by the output's ``aux_weights`` entry; each extra term is ``(its own weight, unweighted
loss)``, reported as part ``"aux<i>_<name>"``. A new kind is one class with this call and one
:data:`AUX_LOSSES` entry.

* ``"seg"``: the criterion of the main output against the labels (deep supervision);
* ``"boundary"`` (PIDNet): class-balanced BCE against a boundary band of the labels, plus the
  boundary-aware ``bag`` term on the main logits;
* ``"detail"`` (STDC): BCE + Dice against Laplacian detail targets of the labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .pixel import Criterion, masked_mean


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
        bce = masked_mean(bce, valid, target)
        m = valid.to(logits.dtype)
        p, t = (torch.sigmoid(logits) * m).flatten(1), (t * m).flatten(1)
        dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
        return bce, dice.mean()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        bce, dice = self.parts(logits, target)
        return bce + dice

class DetailAuxLoss:
    """``"detail"`` (STDC): aux is B×1×H×W detail logits, the loss :class:`DetailLoss`."""

    def __init__(self, criterion: Criterion, ignore_index: int = 255) -> None:
        self.loss = DetailLoss(ignore_index)

    def __call__(self, aux: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> AuxTerms:
        return self.loss(aux, target), {}


AUX_LOSSES: dict[str, type] = {"seg": SegAuxLoss, "boundary": BoundaryLoss,
                               "detail": DetailAuxLoss}
