"""Evaluate a model on a data set: confusion matrix and boundary scores on the device."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..data import SegmentationDataset
from ..distributed import DistInfo
from ..errors import UsageError
from .boundary import BoundaryIoU, PerImageBoundaryFScore, check_ratio
from .metrics import BoundaryFScore, ConfusionMatrix
from .tta import TTAOptions, predict_probs

BOUNDARY_PROTOCOLS = ("pooled", "per_image")


def check_boundary_options(boundary: str, bf_ratio: float, biou_ratio: float | None) -> None:
    """Raise UsageError for an unknown boundary-F protocol or a ratio that is not > 0."""
    if boundary not in BOUNDARY_PROTOCOLS:
        raise UsageError(f"unknown boundary F protocol {boundary!r}; use one of "
                         f"{', '.join(BOUNDARY_PROTOCOLS)}")
    check_ratio("bf_ratio", bf_ratio)
    if biou_ratio is not None:
        check_ratio("biou_ratio", biou_ratio)


@torch.no_grad()
def evaluate_dataset(
    model: nn.Module,
    dataset: SegmentationDataset,
    device: torch.device | str = "cpu",
    options: TTAOptions | None = None,
    *,
    boundary_tolerance: int | Sequence[int] = 2,
    boundary: str = "pooled",
    bf_ratio: float = 0.0075,
    biou_ratio: float | None = None,
    distributed_info: DistInfo | None = None,
    progress: bool = True,
    limit: int | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """mIoU, per-class IoU, pixel accuracy and boundary scores of ``model`` on ``dataset``.

    Images are predicted one at a time with the test-time ``options`` (:class:`TTAOptions`,
    given by name in ``changes`` too): at their own size (``mode="whole"``) or by sliding
    ``crop`` windows (``"slide"``), optionally averaged over ``scales`` and a horizontal flip,
    optionally at the size whose shorter side is ``short_side`` (ADE20K's protocol).
    Under DDP each rank takes every world_size-th image and the counts are summed over ranks.

    The boundary F-score (``mbf``, ``bf``, ``bf_precision``, ``bf_recall``) follows
    ``boundary``: ``"pooled"`` (rtseg's :class:`BoundaryFScore`: counts pooled over the data
    set, square tolerance of ``boundary_tolerance`` pixels) or ``"per_image"`` (Csurka et
    al.'s BF, :class:`PerImageBoundaryFScore`: F1 per image and class with a Euclidean
    tolerance of ``bf_ratio`` × the image diagonal, averaged over each image's ground-truth
    classes, then over images). ``bf_protocol`` names the one used. With ``biou_ratio``,
    Boundary IoU (:class:`BoundaryIoU`) adds ``biou``, ``biou_per_class`` and ``biou_ratio``.

    Returns the merged :meth:`ConfusionMatrix.compute` and boundary dicts plus ``images`` and
    ``pixels`` (the number evaluated and counted, over all ranks). With several pooled
    tolerances the first gives ``bf``/``mbf`` and every one is also in ``mbf_at``
    (``{"1": …, "2": …}``) and ``bf_at`` (per class), from the same predictions.

    Raises:
        UsageError: an unknown ``boundary`` protocol, or a ratio that is not a number > 0.
    """
    from tqdm import tqdm

    check_boundary_options(boundary, bf_ratio, biou_ratio)
    options = (options or TTAOptions()).replace(**changes) if changes else options
    info = distributed_info or DistInfo()
    device = torch.device(device)
    model.eval()
    k, ignore = dataset.num_classes, dataset.ignore_index
    cm = ConfusionMatrix(k, ignore, device)
    tolerances = ([boundary_tolerance] if isinstance(boundary_tolerance, int)
                  else list(boundary_tolerance))
    bfs: list[Any] = ([BoundaryFScore(k, t, ignore, device) for t in tolerances]
                      if boundary == "pooled" else [PerImageBoundaryFScore(k, bf_ratio, ignore,
                                                                           device)])
    extra = [BoundaryIoU(k, biou_ratio, ignore, device)] if biou_ratio is not None else []
    n = len(dataset) if limit is None else min(limit, len(dataset))
    indices = range(info.rank, n, info.world_size)
    for i in tqdm(indices, desc="eval", disable=not (progress and info.is_main), leave=False):
        image, label = dataset[(i, 0)]
        probs = predict_probs(model, image[None].to(device), options, num_classes=k)
        pred = probs.argmax(1)
        target = label[None].to(device)
        for metric in [cm, *bfs, *extra]:
            metric.update(pred, target)
    if info.enabled:
        for metric in [cm, *bfs, *extra]:
            metric.reduce()
    scores = [bf.compute() for bf in bfs]
    res = {**cm.compute(), **scores[0], "bf_protocol": boundary, "images": n,
           "pixels": int(cm.mat.sum())}
    for metric in extra:
        res.update(metric.compute())
    if len(bfs) > 1:
        res["mbf_at"] = {str(t): b["mbf"] for t, b in zip(tolerances, scores, strict=True)}
        res["bf_at"] = {str(t): b["bf"] for t, b in zip(tolerances, scores, strict=True)}
    return res


evaluate = evaluate_dataset  # one-release alias (``rtseg.evaluate`` is the public call)
