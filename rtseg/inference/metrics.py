"""Segmentation metrics that accumulate on the device: confusion-matrix IoU and boundary F-score.

(Boundary IoU and the per-image boundary F of the literature are in
:mod:`rtseg.inference.boundary`.)

Both accumulators follow the same protocol: ``update(pred, target)`` per batch (label maps,
B×H×W or H×W integer tensors), ``reduce()`` once before reading under DDP (sums the counts of
all ranks), ``compute() -> dict`` of Python floats/lists, ``reset()``.

Averaging convention (both metrics): a class enters the mean only when it occurs, i.e. it has
a non-zero denominator — it appears in the target or in the prediction. A class absent from
both is NaN in the per-class list and left out of the mean. This is the Cityscapes
evaluation's convention (``getScoreAverage`` skips NaN), so a dataset split that lacks a class
is not penalised for it, while a class that is only predicted (false positives) scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..utils import format_table as format_rows


def _as_label_maps(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check and bring ``pred``/``target`` (B×H×W or H×W integer) to B×H×W int64."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if pred.dim() not in (2, 3):
        raise ValueError(f"expected H×W or B×H×W label maps, got shape {tuple(pred.shape)}")
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("pred and target must be integer label maps (argmax the logits first)")
    if pred.dim() == 2:
        pred, target = pred[None], target[None]
    return pred.long(), target.long()


def _check_range(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int
) -> torch.Tensor:
    """Raise ValueError on labels outside ``[0, K)``; return the valid (non-ignore) mask."""
    valid = target != ignore_index
    bad_target = valid & ((target < 0) | (target >= num_classes))
    if bool(bad_target.any()):
        values = torch.unique(target[bad_target]).tolist()
        raise ValueError(
            f"target holds labels {values[:10]} outside [0, {num_classes}) that are not "
            f"ignore_index={ignore_index}"
        )
    bad_pred = valid & ((pred < 0) | (pred >= num_classes))
    if bool(bad_pred.any()):
        values = torch.unique(pred[bad_pred]).tolist()
        raise ValueError(f"pred holds labels {values[:10]} outside [0, {num_classes})")
    return valid


def _all_reduce_sum(t: torch.Tensor) -> None:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def _nanmean(values: torch.Tensor) -> float:
    return float(values.nanmean()) if bool((~values.isnan()).any()) else math.nan


class ConfusionMatrix:
    """K×K pixel confusion matrix; rows are the true class, columns the predicted class.

    The matrix (int64) lives on the device of the tensors given to :meth:`update` (it moves
    there on the first update); ``device`` only sets where it starts, which matters for a DDP
    rank that may call :meth:`reduce` without having seen data (NCCL needs a CUDA tensor).

    Args:
        num_classes: K.
        ignore_index: target label whose pixels are not counted.
        device: initial device of the matrix.
    """

    def __init__(
        self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.mat.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch. ``pred``, ``target``: B×H×W or H×W integer label maps.

        Raises:
            ValueError: on a target label outside ``[0, K)`` that is not ``ignore_index``, or
                a predicted label outside ``[0, K)`` at a non-ignored pixel.
        """
        pred, target = _as_label_maps(pred, target)
        k = self.num_classes
        valid = _check_range(pred, target, k, self.ignore_index)
        # Ignored pixels go to an extra bin k*k that is dropped afterwards.
        index = torch.where(valid, target * k + pred, k * k)
        counts = torch.bincount(index.flatten(), minlength=k * k + 1)[: k * k]
        if self.mat.device != counts.device:
            self.mat = self.mat.to(counts.device)
        self.mat += counts.view(k, k)

    def reduce(self) -> None:
        """Sum the matrix over all DDP ranks (in place); a no-op without a process group."""
        _all_reduce_sum(self.mat)

    def compute(self) -> dict[str, float | list[float]]:
        """Scores from the accumulated matrix.

        Returns a dict with:
            ``miou``: mean IoU over the classes present in target or prediction;
            ``iou``: per-class IoU = TP / (TP + FP + FN), NaN for a class absent from both;
            ``pixel_acc``: correctly labelled / counted pixels;
            ``mean_acc``: mean over classes present in the target of TP / (TP + FN);
            ``class_acc``: per-class TP / (TP + FN), NaN for a class absent from the target.
        """
        mat = self.mat.double()
        tp = mat.diagonal()
        gt = mat.sum(1)
        predicted = mat.sum(0)
        union = gt + predicted - tp
        nan = torch.full_like(tp, math.nan)
        iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
        class_acc = torch.where(gt > 0, tp / gt.clamp(min=1), nan)
        total = mat.sum()
        return {
            "miou": _nanmean(iou),
            "iou": iou.tolist(),
            "pixel_acc": float(tp.sum() / total) if total > 0 else math.nan,
            "mean_acc": _nanmean(class_acc),
            "class_acc": class_acc.tolist(),
        }


def _boundary(labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """B×H×W bool: non-ignore pixels with a 4-neighbour of another, non-ignore class."""
    known = labels != ignore_index
    edge = torch.zeros_like(known)
    vertical = (labels[:, 1:, :] != labels[:, :-1, :]) & known[:, 1:, :] & known[:, :-1, :]
    horizontal = (labels[:, :, 1:] != labels[:, :, :-1]) & known[:, :, 1:] & known[:, :, :-1]
    edge[:, 1:, :] |= vertical
    edge[:, :-1, :] |= vertical
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    return edge


def _dilate(mask: torch.Tensor, tolerance: int) -> torch.Tensor:
    """B×H×W bool: pixels within Chebyshev distance ``tolerance`` of a True pixel."""
    if tolerance == 0:
        return mask
    size = 2 * tolerance + 1
    grown = F.max_pool2d(mask[:, None].float(), size, stride=1, padding=tolerance)
    return grown[:, 0] > 0


@torch.no_grad()
def boundary_counts(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    tolerance: int = 2,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Per-class boundary match counts of one batch (see :func:`boundary_fscore`).

    Args:
        pred, target: B×H×W or H×W integer label maps.

    Returns:
        4×K int64 on the input's device; rows: matched predicted boundary pixels, predicted
        boundary pixels, matched true boundary pixels, true boundary pixels.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    pred, target = _as_label_maps(pred, target)
    valid = _check_range(pred, target, num_classes, ignore_index)
    pred = torch.where(valid, pred, ignore_index)  # the target's void is void in both maps
    pred_edge = _boundary(pred, ignore_index)
    true_edge = _boundary(target, ignore_index)

    counts = torch.zeros(4, num_classes, dtype=torch.int64, device=pred.device)
    # Class of every boundary pixel, or K for "not a boundary"; one sync to list the classes.
    present = torch.cat(
        [torch.where(pred_edge, pred, num_classes), torch.where(true_edge, target, num_classes)]
    )
    for c in torch.unique(present).tolist():
        if c == num_classes:
            continue
        pred_c = pred_edge & (pred == c)
        true_c = true_edge & (target == c)
        counts[0, c] = (pred_c & _dilate(true_c, tolerance)).sum()
        counts[1, c] = pred_c.sum()
        counts[2, c] = (true_c & _dilate(pred_c, tolerance)).sum()
        counts[3, c] = true_c.sum()
    return counts


def precision_recall_f(counts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(precision, recall, F, present) from boundary counts ``[matched_pred, n_pred,
    matched_true, n_true]`` (4×…, any trailing shape), in float64. A class with boundary
    pixels on one side only scores P = R = F = 0 on the empty side; ``present``: either side
    has a boundary pixel."""
    matched_pred, n_pred, matched_true, n_true = counts.double()
    precision = torch.where(n_pred > 0, matched_pred / n_pred.clamp(min=1), 0.0)
    recall = torch.where(n_true > 0, matched_true / n_true.clamp(min=1), 0.0)
    pr_sum = precision + recall
    fscore = torch.where(pr_sum > 0, 2 * precision * recall / pr_sum.clamp(min=1e-12), 0.0)
    return precision, recall, fscore, (n_pred + n_true) > 0


def _fscore_from_counts(counts: torch.Tensor, tolerance: int) -> dict[str, float | list[float]]:
    precision, recall, fscore, present = precision_recall_f(counts)
    nan = torch.full_like(fscore, math.nan)
    fscore = torch.where(present, fscore, nan)
    return {
        "mbf": _nanmean(fscore),
        "bf": fscore.tolist(),
        "bf_precision": torch.where(present, precision, nan).tolist(),
        "bf_recall": torch.where(present, recall, nan).tolist(),
        "bf_tolerance": tolerance,
    }


def boundary_fscore(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    tolerance: int = 2,
    ignore_index: int = 255,
) -> dict[str, float | list[float]]:
    """Per-class boundary F-score (BF score, Csurka et al., BMVC 2013) of a batch of label maps.

    Definition, with ``T`` the target and ``P`` the prediction (B×H×W or H×W integer maps):

    1. Pixels where ``T`` is ``ignore_index`` are set to ``ignore_index`` in ``P`` as well, so
       both maps have the same void region, whose pixels are never boundary pixels.
    2. The boundary of a map ``M`` is the set of non-ignore pixels ``p`` with a 4-neighbour
       ``q`` (up/down/left/right, inside the image) such that ``M[q] != M[p]`` and ``M[q]`` is
       not ignore. A neighbour that is ignore never makes a pixel a boundary pixel, and the
       image border is not a boundary. The class-c boundary ``B_c(M)`` is the boundary pixels
       with ``M[p] == c`` (so a c|d edge gives a c-boundary line and a d-boundary line).
    3. ``D_t(S)`` = pixels within Chebyshev distance ``t = tolerance`` of a pixel of ``S``
       (a (2t+1)×(2t+1) max-pool dilation).
    4. For each class c, summed over every image of the batch (or, in :class:`BoundaryFScore`,
       of all updates):
       precision ``P_c = |B_c(P) ∩ D_t(B_c(T))| / |B_c(P)|``,
       recall ``R_c = |B_c(T) ∩ D_t(B_c(P))| / |B_c(T)|``,
       ``F_c = 2 P_c R_c / (P_c + R_c)`` (0 when both are 0). An empty side scores 0, so a
       class with boundaries in only one map has ``F_c = 0``.
    5. A class with no boundary pixel in either map is NaN and excluded from the mean ``mbf``.

    Counts are pooled over images before dividing (not a mean of per-image F-scores).

    Returns:
        ``{"mbf": float, "bf": [F_c], "bf_precision": [P_c], "bf_recall": [R_c],
        "bf_tolerance": t}``.
    """
    counts = boundary_counts(pred, target, num_classes, tolerance, ignore_index)
    return _fscore_from_counts(counts, tolerance)


class PooledCounts:
    """A metric that sums an integer count tensor over updates (and DDP ranks): subclasses set
    ``self.counts`` in ``__init__`` and implement ``_count(pred, target)`` and ``compute()``."""

    counts: torch.Tensor

    def _count(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reset(self) -> None:
        self.counts.zero_()

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch. ``pred``, ``target``: B×H×W or H×W integer label maps."""
        counts = self._count(pred, target)
        if self.counts.device != counts.device:
            self.counts = self.counts.to(counts.device)
        self.counts += counts

    def reduce(self) -> None:
        """Sum the counts over all DDP ranks (in place); a no-op without a process group."""
        _all_reduce_sum(self.counts)


class BoundaryFScore(PooledCounts):
    """Accumulating :func:`boundary_fscore`: pools the per-class counts over all updates.

    Args:
        num_classes: K.
        tolerance: match distance in pixels (Chebyshev).
        ignore_index: target label treated as void.
        device: initial device of the counts (they follow the data on update).
    """

    def __init__(
        self,
        num_classes: int,
        tolerance: int = 2,
        ignore_index: int = 255,
        device: torch.device | str | None = None,
    ) -> None:
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        self.num_classes = num_classes
        self.tolerance = tolerance
        self.ignore_index = ignore_index
        self.counts = torch.zeros(4, num_classes, dtype=torch.int64, device=device)

    def _count(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return boundary_counts(pred, target, self.num_classes, self.tolerance, self.ignore_index)

    def compute(self) -> dict[str, float | list[float]]:
        """Same keys as :func:`boundary_fscore`, from the pooled counts."""
        return _fscore_from_counts(self.counts, self.tolerance)


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f}"


def format_metrics(result: Mapping[str, object], class_names: Sequence[str]) -> str:
    """A per-class text table of IoU, boundary F and Boundary IoU (those in ``result``), in %.

    ``result`` is a :meth:`ConfusionMatrix.compute` dict, optionally merged with a boundary F
    dict (:meth:`BoundaryFScore.compute`, header ``BF@2px``, or the per-image protocol's,
    header ``BF@0.75%diag``) and a Boundary IoU dict (``biou_per_class``, header
    ``BIoU@2%diag``). NaN (class absent) prints as ``-``. The per-image protocol's mean is
    over images, so it need not be the mean of its column.
    """
    columns: list[tuple[str, list[float], float]] = []
    if "iou" in result:
        columns.append(("IoU", list(result["iou"]), float(result["miou"])))
    if "bf" in result:
        if result.get("bf_protocol") == "per_image":
            header = f"BF@{100 * float(result['bf_ratio']):g}%diag"
        else:
            header = f"BF@{result.get('bf_tolerance', '?')}px"
        columns.append((header, list(result["bf"]), float(result["mbf"])))
    if "biou_per_class" in result:
        header = f"BIoU@{100 * float(result['biou_ratio']):g}%diag"
        columns.append((header, list(result["biou_per_class"]), float(result["biou"])))
    if not columns:
        raise ValueError("result has neither 'iou' nor 'bf' nor 'biou_per_class'")
    for name, values, _ in columns:
        if len(values) != len(class_names):
            raise ValueError(f"{len(values)} {name} values for {len(class_names)} class names")

    rows = [[cname] + [_fmt(v[i]).strip() for _, v, _ in columns]
            for i, cname in enumerate(class_names)]
    rows.append(["mean"] + [_fmt(m).strip() for _, _, m in columns])
    lines = [format_rows(["class"] + [name for name, _, _ in columns], rows)]
    if "pixel_acc" in result:
        lines.append(
            f"pixel acc {_fmt(float(result['pixel_acc'])).strip()}  "
            f"mean acc {_fmt(float(result['mean_acc'])).strip()}"
        )
    return "\n".join(lines)


format_table = format_metrics  # one-release alias (rtseg.utils.format_table formats any rows)
