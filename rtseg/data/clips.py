"""Clips for temporal models: a labelled frame with the ``past`` frames before it.

``load(i)`` gives ``(clip uint8 T×3×H×W, label H×W)`` with T = past + 1, oldest frame first and
the labelled frame last; ``ds[(i, seed)]`` applies the transform to every frame with the same
random draws (the same scale, crop, flip and colour jitter) and to the label with the last.

Where the context frames come from:

* **CamVid** (:func:`camvid_clips`): the SegNet release holds only the labelled frames, named
  ``<drive>_<frame number>`` (frame numbers of 30 fps video). The context of a frame is the
  previous labelled frames of the same drive *in the same split* (so a training clip never
  shows a test image). Their spacing differs by split (counted from the file names):

  - train: 367 frames of drives 0001TP, 0006R0, 0016E5, 30 frames (1 s) apart, except in
    0016E5: once 29 and once 31 frames, one jump of 270 frames (9 s) and one of 1950 frames
    (65 s), where the val frames were cut out of the drive;
  - val: 101 frames of 0016E5, every 2nd frame (1/15 s apart);
  - test: 233 frames of 0001TP and Seq05VD, 30 frames (1 s) apart.

  So a train or test clip spans seconds (what the past adds is scene context, not a nearly
  identical view), a val clip a fraction of one. The paper's "+Temp" spacing is not known
  from the sources here.

  Where a drive has fewer than ``past`` earlier frames, its first frame stands in for the
  missing ones (:func:`rtseg.data.history.context_positions`, shared with streaming).
* **Cityscapes** (:func:`cityscapes_clips`): the official ``leftImg8bit_sequence`` release, the
  30-frame snippet around each labelled frame (frame 19 of the snippet):
  ``leftImg8bit_sequence/{split}/{city}/{city}_{seq}_{frame:06d}_leftImg8bit.png``; the context
  is the ``past`` frames immediately before (``gap`` frames apart; rtseg's choice: the
  paper's spacing is not in the sources here).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from .camvid import CamVid
from .cityscapes import Cityscapes
from .history import context_positions
from .io import DataError, SegmentationDataset, Transform, read_image


class ClipDataset(SegmentationDataset):
    """Labelled frames of ``base`` with their context frames (paths per sample, oldest first).

    The class table, names and labels are ``base``'s; ``base`` must have no transform.
    """

    def __init__(self, base: SegmentationDataset, context: Sequence[Sequence[Path]],
                 transform: Transform | None = None) -> None:
        if len(context) != len(base):
            raise ValueError(f"{len(context)} context lists for {len(base)} samples")
        self.base, self.context, self.transform = base, [list(c) for c in context], transform
        self.classes, self.palette = base.classes, base.palette
        self.ignore_index = base.ignore_index
        self.past = len(self.context[0]) if self.context else 0

    def __len__(self) -> int:
        return len(self.base)

    def name(self, index: int) -> str:
        return self.base.name(index)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self._check_index(index)
        image, label = self.base.load(index)
        frames = []
        for path in self.context[index]:
            frame = read_image(path)
            if frame.shape != image.shape:
                raise DataError(f"{path}: context frame is {frame.shape[2]}×{frame.shape[1]} "
                                f"(W×H), the labelled frame {image.shape[2]}×{image.shape[1]}")
            frames.append(frame)
        return torch.stack(frames + [image]), label

    def _transformed(self, clip: torch.Tensor, label: torch.Tensor,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every frame with the same seed, so the same draws; the label goes with the last."""
        apply = super()._transformed
        frames = [apply(frame, label, seed) for frame in clip]
        return torch.stack([x for x, _ in frames]), frames[-1][1]


_CAMVID_NAME = re.compile(r"^(?P<drive>.+)_f?(?P<frame>\d+)$")


def camvid_clips(base: CamVid, past: int = 1, transform: Transform | None = None) -> ClipDataset:
    """CamVid frames with the previous labelled frames of the same drive (see module doc)."""
    drives: dict[str, list[tuple[int, int]]] = {}
    for i in range(len(base)):
        m = _CAMVID_NAME.match(base.name(i))
        if m is None:
            raise DataError(f"{base.samples[i][0]}: not a <drive>_<frame number> CamVid name")
        drives.setdefault(m["drive"], []).append((int(m["frame"]), i))
    context: list[list[Path]] = [[] for _ in range(len(base))]
    for frames in drives.values():
        order = [i for _, i in sorted(frames)]
        for k, i in enumerate(order):
            earlier = [order[j] for j in context_positions(k, past)]
            context[i] = [base.samples[e][0] for e in earlier]
    return ClipDataset(base, context, transform)


_CITY_NAME = re.compile(r"^(?P<stem>.+_\d+)_(?P<frame>\d{6})_leftImg8bit\.png$")


def cityscapes_clips(base: Cityscapes, past: int = 1, gap: int = 1,
                     transform: Transform | None = None) -> ClipDataset:
    """Cityscapes frames with the ``past`` frames before them from ``leftImg8bit_sequence``."""
    seq_root = base.root / "leftImg8bit_sequence"
    if not seq_root.is_dir():
        raise DataError(f"{seq_root}: Cityscapes sequence folder (leftImg8bit_sequence) not "
                        "found; the temporal models need the video snippets")
    context: list[list[Path]] = []
    for image_path, *_ in base.samples:
        m = _CITY_NAME.match(image_path.name)
        if m is None:
            raise DataError(f"{image_path}: not a <city>_<seq>_<frame>_leftImg8bit.png name")
        split_city = image_path.parent.relative_to(base.root / "leftImg8bit")
        frame = int(m["frame"])
        paths = [seq_root / split_city / f"{m['stem']}_{frame - k * gap:06d}_leftImg8bit.png"
                 for k in range(past, 0, -1)]
        for p in paths:
            if not p.is_file():
                raise DataError(f"{p}: missing context frame of {image_path}")
        context.append(paths)
    return ClipDataset(base, context, transform)


def make_clips(ds: SegmentationDataset, past: int) -> ClipDataset:
    """The clip version of a CamVid or Cityscapes data set (its transform moves to the clips)."""
    transform, ds.transform = ds.transform, None
    if isinstance(ds, CamVid):
        return camvid_clips(ds, past, transform)
    if isinstance(ds, Cityscapes):
        return cityscapes_clips(ds, past, transform=transform)
    raise DataError(f"{type(ds).__name__} has no video frames: temporal models train on "
                    "camvid or cityscapes (with leftImg8bit_sequence)")
