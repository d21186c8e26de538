"""Pre-flight check of a data set: every pair read and checked, every problem in one list.

Training stops at the first bad file it meets (naming it); ``rtseg check-data PATH`` is the way
to find them all before a long run. Each split is scanned in collect mode (a sample whose files
do not pair up is reported and left out) and every remaining sample is loaded exactly as
training loads it (decoded, sizes compared, label values checked).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import DataError, SegmentationDataset, build_dataset, detect_dataset


def check_dataset(root: str | Path, dataset: str | None = None,
                  splits: Sequence[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Check every sample of the ``splits`` of the data set in ``root``.

    Args:
        root: the data set folder.
        dataset: its kind (a name of ``rtseg.data.DATASETS``); detected from the layout if None.
        splits: the splits to check; default: train, val and test, those that exist (a folder
            data set without split folders is checked as one split).

    Returns:
        ``{"dataset", "root", "splits": {split: samples checked}, "problems": [message, ...]}``.
    """
    from tqdm import tqdm

    dataset = dataset or detect_dataset(root)
    root = Path(root)
    problems: list[str] = []
    if splits is None:  # the usual splits that are there; a folder data set may have none
        found = {s: ds for s in ("train", "val", "test")
                 if (ds := _build(dataset, root, s, [])) is not None}
        if not found:
            split = None if dataset == "folder" else "train"
            found = {split: _build(dataset, root, split, problems)}
    else:
        found = {s: _build(dataset, root, s, problems) for s in splits}
    checked: dict[str, int] = {}
    for split, ds in found.items():
        if ds is None:
            continue
        problems += ds.problems
        for i in tqdm(range(len(ds)), desc=f"check {split or 'all'}", disable=not progress,
                      leave=False):
            try:
                ds.load(i)
            except DataError as e:
                problems.append(str(e))
        checked[str(split)] = len(ds)
    return {"dataset": dataset, "root": str(root), "splits": checked, "problems": problems}


def _build(dataset: str, root: Path, split: str | None,
           problems: list[str]) -> SegmentationDataset | None:
    """The split scanned in collect mode, or None with its problem added to ``problems``."""
    try:
        return build_dataset(dataset, root, split, strict=False)
    except DataError as e:
        problems.append(str(e))
        return None
