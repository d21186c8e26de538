"""Evaluate a model on a data set: confusion matrix and boundary F-score on the device."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..data import SegmentationDataset
from ..distributed import DistInfo
from .metrics import BoundaryFScore, ConfusionMatrix
from .tta import TTAOptions, predict_probs


@torch.no_grad()
def evaluate_dataset(
    model: nn.Module,
    dataset: SegmentationDataset,
    device: torch.device | str = "cpu",
    options: TTAOptions | None = None,
    *,
    boundary_tolerance: int | Sequence[int] = 2,
    distributed_info: DistInfo | None = None,
    progress: bool = True,
    limit: int | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """mIoU, per-class IoU, pixel accuracy and boundary F-score of ``model`` on ``dataset``.

    Images are predicted one at a time with the test-time ``options`` (:class:`TTAOptions`,
    given by name in ``changes`` too): at their own size (``mode="whole"``) or by sliding
    ``crop`` windows (``"slide"``), optionally averaged over ``scales`` and a horizontal flip,
    optionally at the size whose shorter side is ``short_side`` (ADE20K's protocol).
    Under DDP each rank takes every world_size-th image and the counts are summed over ranks.

    Returns the merged :meth:`ConfusionMatrix.compute` and :meth:`BoundaryFScore.compute`
    dicts plus ``images`` and ``pixels`` (the number evaluated and counted, over all ranks).
    With several boundary tolerances the first gives ``bf``/``mbf`` and every one is also in
    ``mbf_at`` (``{"1": …, "2": …}``) and ``bf_at`` (per class), from the same predictions.
    """
    from tqdm import tqdm

    options = (options or TTAOptions()).replace(**changes) if changes else options
    info = distributed_info or DistInfo()
    device = torch.device(device)
    model.eval()
    k, ignore = dataset.num_classes, dataset.ignore_index
    cm = ConfusionMatrix(k, ignore, device)
    tolerances = ([boundary_tolerance] if isinstance(boundary_tolerance, int)
                  else list(boundary_tolerance))
    bfs = [BoundaryFScore(k, t, ignore, device) for t in tolerances]
    n = len(dataset) if limit is None else min(limit, len(dataset))
    indices = range(info.rank, n, info.world_size)
    for i in tqdm(indices, desc="eval", disable=not (progress and info.is_main), leave=False):
        image, label = dataset[(i, 0)]
        probs = predict_probs(model, image[None].to(device), options, num_classes=k)
        pred = probs.argmax(1)
        target = label[None].to(device)
        cm.update(pred, target)
        for bf in bfs:
            bf.update(pred, target)
    if info.enabled:
        cm.reduce()
        for bf in bfs:
            bf.reduce()
    boundary = [bf.compute() for bf in bfs]
    res = {**cm.compute(), **boundary[0], "images": n, "pixels": int(cm.mat.sum())}
    if len(bfs) > 1:
        res["mbf_at"] = {str(t): b["mbf"] for t, b in zip(tolerances, boundary, strict=True)}
        res["bf_at"] = {str(t): b["bf"] for t, b in zip(tolerances, boundary, strict=True)}
    return res


evaluate = evaluate_dataset  # one-release alias (``rtseg.evaluate`` is the public call)
