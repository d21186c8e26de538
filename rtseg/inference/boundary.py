"""Boundary IoU and the per-image boundary F-score of the literature, on label maps.

Both take B×H×W (or H×W) integer label maps, like :mod:`rtseg.inference.metrics`, and share
its accumulator protocol (``update``, ``reduce``, ``compute``, ``reset``) and ignore rule:
where the target is ``ignore_index`` the prediction is set to ``ignore_index`` too, so both
maps have the same void region. A void pixel belongs to no class, is never counted, and is
*neutral* for its neighbours: it neither makes nor hides a contour. The image border, on the
other hand, is a contour (as in both reference implementations below).

**Boundary IoU** (Cheng, Girshick, Dollár, Berg, Kirillov, "Boundary IoU: Improving
Object-Centric Image Segmentation Evaluation", CVPR 2021; reference code
``boundary_iou/utils/boundary_utils.py`` of github.com/bowenc0221/boundary-iou-api). For a
mask G the band G_d is G minus its erosion by d: the reference pads the mask with one ring of
zeros (``cv2.copyMakeBorder``; its comment: "so mask truncated by the image border is also
considered as boundary") and erodes d times with a 3×3 square kernel, so G_d is the pixels of
G within Chebyshev distance d of a pixel outside G or of the outside of the image. Boundary
IoU = |G_d ∩ P_d| / |G_d ∪ P_d| (G_d ⊂ G, so this is the paper's (G_d∩G)∩(P_d∩P) over the
union). ``d = max(1, round(ratio · diagonal))`` per image, as the reference computes it
(Python's ``round``, halves to even); the paper's ratio is 0.02 (its Cityscapes scripts use
0.005). For semantic segmentation the class-c masks are ``T == c`` and ``P == c``, and the
per-class intersection and union are summed over the whole data set before dividing (like
mIoU); a class with zero union is NaN and left out of the mean.

**Per-image boundary F** (Csurka, Larlus, Perronnin, "What is a good evaluation measure for
semantic segmentation?", BMVC 2013; the BF of SegNet and later CamVid papers; MATLAB's
``bfscore``/``evaluateSemanticSegmentation``). Per image and class c: the boundary of a mask is
its pixels with a 4-neighbour outside it or on the image border (MATLAB: the mask minus its
erosion by a 3×3 cross after zero-padding); a boundary point matches when the other map's
class-c boundary has a point at Euclidean distance < θ, θ = ratio · diagonal (0.75 %);
precision and recall are the matched fractions and F1 their harmonic mean. The image's score
is the mean F1 over the classes present in its ground truth (SegNet: "the F1-measure for each
class that is present in the ground truth test image is averaged to produce an image
F1-measure"), and the data set's is the mean over images.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..errors import UsageError
from .metrics import (
    PooledCounts,
    _all_reduce_sum,
    _as_label_maps,
    _boundary,
    _check_range,
    _nanmean,
    precision_recall_f,
)

Reduce = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_ratio(name: str, ratio: float) -> float:
    """``ratio`` as a float if it is a finite number > 0; else a UsageError naming ``name``."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) \
            or not math.isfinite(ratio) or ratio <= 0:
        raise UsageError(f"{name} must be a finite number > 0 (a fraction of the image "
                         f"diagonal), got {ratio!r}")
    return float(ratio)


def _sliding(x: torch.Tensor, radius: int, dim: int, fill: float | bool,
             op: Reduce) -> torch.Tensor:
    """``op`` (maximum, minimum, logical_or) over the window [i - radius, i + radius] along
    ``dim``, positions outside the tensor being ``fill``; O(log radius) passes."""
    n, length = x.shape[dim], 2 * radius + 1
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [radius, radius]
    x = torch.nn.functional.pad(x, pad, value=fill)
    span = 1  # x[i] now reduces the span positions from i on; doubled while it fits
    while 2 * span <= length:
        x = op(x.narrow(dim, 0, x.shape[dim] - span), x.narrow(dim, span, x.shape[dim] - span))
        span *= 2
    # two overlapping spans cover the window: [i, i + span) and [i + length - span, i + length)
    return op(x.narrow(dim, 0, n), x.narrow(dim, length - span, n))


def boundary_width(height: int, width: int, ratio: float) -> int:
    """Boundary IoU's d in pixels: ``max(1, round(ratio · diagonal))``, as the reference."""
    return max(1, int(round(check_ratio("ratio", ratio) * math.sqrt(height**2 + width**2))))


def _band(labels: torch.Tensor, d: int, ignore_index: int) -> torch.Tensor:
    """B×H×W bool: non-ignore pixels within Chebyshev distance ``d`` of a non-ignore pixel of
    another class or of the outside of the image (the band G_d of every class at once)."""
    known = labels != ignore_index
    lab = labels.int()
    # The window holds another class iff its smallest or largest class differs from the
    # pixel's; void counts as the pixel's own class (high for the min, -1 for the max) and
    # the outside as -1, which the min always sees.
    low = torch.where(known, lab, torch.iinfo(torch.int32).max)
    high = torch.where(known, lab, -1)
    for dim in (1, 2):
        low = _sliding(low, d, dim, -1, torch.minimum)
        high = _sliding(high, d, dim, -1, torch.maximum)
    return known & ((low != lab) | (high != lab))


def _binned(values: torch.Tensor, keep: torch.Tensor, k: int) -> torch.Tensor:
    """Per-class counts of ``values`` where ``keep`` (no host sync: the rest go to bin k)."""
    return torch.bincount(torch.where(keep, values, k).flatten(), minlength=k + 1)[:k]


@torch.no_grad()
def boundary_iou_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                        ratio: float = 0.02, ignore_index: int = 255) -> torch.Tensor:
    """2×K int64 per-class Boundary IoU intersection and union of a batch (see the module).

    Raises:
        ValueError: mismatched or non-integer maps, labels outside ``[0, K)``, a bad ratio.
    """
    pred, target = _as_label_maps(pred, target)
    valid = _check_range(pred, target, num_classes, ignore_index)
    pred = torch.where(valid, pred, ignore_index)
    d = boundary_width(pred.shape[1], pred.shape[2], ratio)
    band_true = _band(target, d, ignore_index)
    band_pred = _band(pred, d, ignore_index)
    k = num_classes
    inter = _binned(target, band_true & band_pred & (target == pred), k)
    union = _binned(target, band_true, k) + _binned(pred, band_pred, k) - inter
    return torch.stack([inter, union])


class BoundaryIoU(PooledCounts):
    """Per-class Boundary IoU pooled over a data set (see the module docstring).

    Args:
        num_classes: K.
        ratio: d as a fraction of each image's diagonal (0.02 in the paper).
        ignore_index: target label treated as void.
        device: initial device of the counts (they follow the data on update).
    """

    def __init__(self, num_classes: int, ratio: float = 0.02, ignore_index: int = 255,
                 device: torch.device | str | None = None) -> None:
        self.num_classes = num_classes
        self.ratio = check_ratio("ratio", ratio)
        self.ignore_index = ignore_index
        self.counts = torch.zeros(2, num_classes, dtype=torch.int64, device=device)

    def _count(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return boundary_iou_counts(pred, target, self.num_classes, self.ratio,
                                   self.ignore_index)

    def compute(self) -> dict[str, float | list[float]]:
        """``biou`` (mean over classes with a non-zero union), ``biou_per_class`` (NaN for a
        class with zero union) and ``biou_ratio``."""
        inter, union = self.counts.double()
        per_class = torch.where(union > 0, inter / union.clamp(min=1), math.nan)
        return {"biou": _nanmean(per_class), "biou_per_class": per_class.tolist(),
                "biou_ratio": self.ratio}


def _contour(labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """B×H×W bool: non-ignore pixels with a 4-neighbour of another non-ignore class, or on
    the image border (MATLAB's mask minus its zero-padded erosion by a 3×3 cross)."""
    edge = _boundary(labels, ignore_index)
    edge[:, [0, -1], :] = True
    edge[:, :, [0, -1]] = True
    return edge & (labels != ignore_index)


def _disk_dilate(mask: torch.Tensor, theta: float) -> torch.Tensor:
    """N×H×W bool: pixels at Euclidean distance < ``theta`` from a True pixel of ``mask``.

    The disk is a stack of rows: row dy spans |dx| ≤ w(dy), the largest w with
    w² + dy² < θ²; each distinct w is one row-wise window OR, then rows are shifted by dy.
    """
    reach = math.ceil(theta) - 1  # the largest |dy| with dy² < θ² (θ > 0)
    half = {}
    for dy in range(reach + 1):
        rest = theta * theta - dy * dy
        if rest > 0:
            half[dy] = math.isqrt(math.ceil(rest) - 1)  # largest w with w² < rest
    rows = {w: _sliding(mask, w, 2, False, torch.logical_or) for w in set(half.values())}
    out = torch.zeros_like(mask)
    h = mask.shape[1]
    for dy, w in half.items():
        for s in {dy, -dy}:  # out[y] |= row[y + s]
            out[:, max(0, -s):h - max(0, s)] |= rows[w][:, max(0, s):h - max(0, -s)]
    return out


@torch.no_grad()
def per_image_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ratio: float = 0.0075,
                     ignore_index: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-class boundary match counts for :class:`PerImageBoundaryFScore`.

    Returns:
        ``counts``: 4×B×K int64, rows matched predicted boundary pixels, predicted boundary
        pixels, matched true boundary pixels, true boundary pixels; ``present``: B×K bool,
        the classes in each image's target.
    """
    pred, target = _as_label_maps(pred, target)
    valid = _check_range(pred, target, num_classes, ignore_index)
    pred = torch.where(valid, pred, ignore_index)
    b, h, w = pred.shape
    theta = check_ratio("ratio", ratio) * math.sqrt(h**2 + w**2)
    k = num_classes
    pred_edge, true_edge = _contour(pred, ignore_index), _contour(target, ignore_index)
    present = torch.stack([_binned(t, t != ignore_index, k) > 0 for t in target])
    counts = torch.zeros(4, b, k, dtype=torch.int64, device=pred.device)
    # Only classes with a boundary somewhere in the batch need the dilations (one host sync).
    classes = torch.unique(torch.cat([pred[pred_edge], target[true_edge]]))
    if classes.numel() == 0:
        return counts, present
    cls = classes.view(1, -1, 1, 1)
    pred_c = pred_edge[:, None] & (pred[:, None] == cls)  # B×C×H×W
    true_c = true_edge[:, None] & (target[:, None] == cls)
    near_pred = _disk_dilate(pred_c.flatten(0, 1), theta).view_as(pred_c)
    near_true = _disk_dilate(true_c.flatten(0, 1), theta).view_as(true_c)
    for row, hits in enumerate([pred_c & near_true, pred_c, true_c & near_pred, true_c]):
        counts[row][:, classes] = hits.sum((2, 3))
    return counts, present


class PerImageBoundaryFScore:
    """The per-image BF of Csurka et al. (see the module docstring), accumulated over images.

    For image i and class c: ``P = matched predicted / predicted boundary pixels``,
    ``R = matched true / true boundary pixels`` (an empty side scores 0, so a class of the
    ground truth that is not predicted has F = 0), ``F = 2PR / (P + R)`` (0 when both are 0).
    The image's score is the mean F over the classes present in its target that have a
    boundary pixel in either map; an image without such a class has no score. ``mbf`` is the
    mean over scored images; ``bf[c]`` (and ``bf_precision``, ``bf_recall``) the mean over the
    images in which c was scored, NaN if none. ``mbf`` is therefore not the mean of ``bf``.

    Args:
        num_classes: K.
        ratio: θ as a fraction of each image's diagonal (0.0075 in the paper and MATLAB).
        ignore_index: target label treated as void.
        device: initial device of the sums (they follow the data on update).
    """

    def __init__(self, num_classes: int, ratio: float = 0.0075, ignore_index: int = 255,
                 device: torch.device | str | None = None) -> None:
        self.num_classes = num_classes
        self.ratio = check_ratio("ratio", ratio)
        self.ignore_index = ignore_index
        # rows: sum of F, of P, of R, number of images scored per class; and (sum, count) of
        # the image scores. Sums of per-image values, so DDP ranks add up.
        self.class_sums = torch.zeros(4, num_classes, dtype=torch.float64, device=device)
        self.image_sums = torch.zeros(2, dtype=torch.float64, device=device)

    def reset(self) -> None:
        self.class_sums.zero_()
        self.image_sums.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch. ``pred``, ``target``: B×H×W or H×W integer label maps."""
        counts, present = per_image_counts(pred, target, self.num_classes, self.ratio,
                                           self.ignore_index)
        precision, recall, fscore, has_boundary = precision_recall_f(counts)
        scored = present & has_boundary  # B×K
        weight = scored.double()
        if self.class_sums.device != counts.device:
            self.class_sums = self.class_sums.to(counts.device)
            self.image_sums = self.image_sums.to(counts.device)
        self.class_sums += torch.stack([(v * weight).sum(0) for v in
                                        (fscore, precision, recall, torch.ones_like(weight))])
        per_image = weight.sum(1)
        has_score = per_image > 0
        image_f = (fscore * weight).sum(1) / per_image.clamp(min=1)
        self.image_sums += torch.stack([(image_f * has_score).sum(), has_score.sum().double()])

    def reduce(self) -> None:
        """Sum over all DDP ranks (in place); a no-op without a process group."""
        _all_reduce_sum(self.class_sums)
        _all_reduce_sum(self.image_sums)

    def compute(self) -> dict[str, float | list[float] | str | int]:
        """``mbf``, ``bf``, ``bf_precision``, ``bf_recall`` (see the class docstring), with
        ``bf_protocol`` ``"per_image"``, ``bf_ratio`` and ``bf_images`` (images scored)."""
        f_sum, p_sum, r_sum, n = self.class_sums
        per_class = [torch.where(n > 0, s / n.clamp(min=1), math.nan).tolist()
                     for s in (f_sum, p_sum, r_sum)]
        total, images = self.image_sums.tolist()
        return {"mbf": total / images if images > 0 else math.nan, "bf": per_class[0],
                "bf_precision": per_class[1], "bf_recall": per_class[2],
                "bf_protocol": "per_image", "bf_ratio": self.ratio, "bf_images": int(images)}
