"""The probe's boundary figure: the same test-frame crops around poles and sign edges, per run.

The crops are chosen from the ground truth alone (never from a prediction): in every test
frame, the window with the most boundary pixels of thin classes (Pole, SignSymbol); the frames
whose best window has the most are shown. Each row: the image crop, the ground truth, then each
frozen-backbone upsampler's prediction (seed of the first run). Drawn by
``python -m studies.probe.run`` at its end.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

import rtseg
from studies.common import load_runs, palette_of, save_grid

THIN_IDS = (2, 6)  # CamVid Pole, SignSymbol
WINDOW = (96, 128)


def thin_boundary(label: torch.Tensor) -> torch.Tensor:
    """H×W float: 1 where a pixel of a thin class touches another class (4-neighbourhood)."""
    thin = torch.zeros_like(label, dtype=torch.bool)
    for c in THIN_IDS:
        thin |= label == c
    diff = torch.zeros_like(thin)
    diff[1:] |= label[1:] != label[:-1]
    diff[:-1] |= label[:-1] != label[1:]
    diff[:, 1:] |= label[:, 1:] != label[:, :-1]
    diff[:, :-1] |= label[:, :-1] != label[:, 1:]
    return (thin & diff).float()


def window(label: torch.Tensor) -> tuple[int, int]:
    return min(WINDOW[0], label.shape[0]), min(WINDOW[1], label.shape[1])


def best_window(label: torch.Tensor) -> tuple[int, int, float]:
    """(top, left, count) of the window with the most thin-class boundary pixels."""
    size = window(label)
    counts = F.avg_pool2d(thin_boundary(label)[None, None], size, stride=8)[0, 0]
    idx = int(counts.argmax())
    r, c = divmod(idx, counts.shape[1])
    return r * 8, c * 8, float(counts.max()) * size[0] * size[1]


def boundary_figure(args: argparse.Namespace, path: Path, rows: int = 4,
                    prefix: str = "frozen", **options) -> None:
    """The crops of ``rows`` test frames; predictions of the runs ``<prefix>_<up>_s<seed>``
    under ``args.out`` (first seed), loaded with the test-time ``options`` (e.g. ``scales``)."""
    ds = rtseg.data.CamVid(args.data, "test")
    palette = palette_of(ds)
    windows = sorted(((best_window(ds.load(i)[1]), i) for i in range(len(ds))),
                     key=lambda w: -w[0][2])
    chosen = []
    for (top, left, _), i in windows:  # at most one crop per 20 frames: different scenes
        if all(abs(i - j) >= 20 for _, j in chosen):
            chosen.append(((top, left), i))
        if len(chosen) == rows:
            break
    segs = load_runs({up: Path(args.out) / f"{prefix}_{up}_s{args.seeds[0]}"
                      for up in args.upsamplers}, args.device, **options)
    grid = []
    for (top, left), i in chosen:
        image, label = ds.load(i)
        h, w = window(label)
        crop = (slice(top, top + h), slice(left, left + w))
        grid.append([(f"test {ds.name(i)}", image.permute(1, 2, 0)[crop]),
                     ("ground truth", palette[label][crop])]
                    + [(up, palette[seg(image)][crop]) for up, seg in segs.items()])
    save_grid(grid, path, cell=(2.2, 1.8))
