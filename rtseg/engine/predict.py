"""Prediction on an image, a folder of images or a video file, written as files.

Per frame: ``<name>_label.png`` (class indices, palette-coloured for viewing) and
``<name>_overlay.png`` (the prediction's colours over the input).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..data.io import DataError, read_image
from ..errors import InputNotFoundError, UsageError
from ..segmenter import Segmenter
from ..utils import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from ..viz import save_label_png


def iter_frames(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, uint8 3×H×W) for an image, every image of a folder, or every video frame.

    The path is checked here, before the first frame is read.
    """
    if not path.exists():
        raise InputNotFoundError(f"{path}: input not found")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        return ((f.stem, read_image(f)) for f in files)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _video_frames(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return iter([(path.stem, read_image(path))])
    raise UsageError(f"{path}: not a folder, an image ({', '.join(IMAGE_SUFFIXES)}) "
                     f"or a video ({', '.join(VIDEO_SUFFIXES)})")


def _video_frames(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise DataError(f"{path}: cannot open video ({e})") from None
    with container:
        try:
            for i, frame in enumerate(container.decode(video=0)):
                arr = frame.to_ndarray(format="rgb24")
                yield f"{path.stem}_{i:06d}", torch.from_numpy(arr).permute(2, 0, 1)
        except av.error.FFmpegError as e:
            raise DataError(f"{path}: cannot decode video ({e})") from None


def predict_path(
    seg: Segmenter,
    source: str | Path,
    out_dir: str | Path,
    limit: int | None = None,
    progress: bool = True,
) -> list[Path]:
    """Predict every frame of ``source`` with ``seg`` (and its test-time options).

    Writes ``<name>_label.png`` and ``<name>_overlay.png`` into ``out_dir``; returns the
    overlay paths.
    """
    from PIL import Image
    from tqdm import tqdm

    source, out_dir = Path(source), Path(out_dir)
    frames = iter_frames(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for n, (name, image) in enumerate(tqdm(frames, desc="predict", leave=False,
                                           disable=not progress)):
        if limit is not None and n >= limit:
            break
        labels = seg(image)
        save_label_png(labels.numpy().astype(np.uint8), seg.palette, out_dir / f"{name}_label.png")
        path = out_dir / f"{name}_overlay.png"
        Image.fromarray(seg.overlay(image, labels)).save(path)
        written.append(path)
    return written
