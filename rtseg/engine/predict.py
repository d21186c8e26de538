"""Prediction on an image, a folder of images or a video file, written as files or a video.

:func:`predict_path` writes, per frame, ``<name>_label.png`` (class indices, palette-coloured
for viewing) and ``<name>_overlay.png`` (the prediction's colours over the input).
:func:`predict_video` writes the overlays of a video as a video (H.264, the input's frame rate
divided by ``every``) and measures the frames per second achieved.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.io import DataError, read_image
from ..errors import InputNotFoundError, UsageError
from ..segmenter import Segmenter
from ..utils import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from ..viz import save_label_png


def iter_frames(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, uint8 3×H×W) for an image, every image of a folder (each turned upright by its
    EXIF orientation), or every video frame.

    The path is checked here, before the first frame is read.
    """
    if not path.exists():
        raise InputNotFoundError(f"{path}: input not found")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        return ((f.stem, read_image(f, upright=True)) for f in files)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _video_frames(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return iter([(path.stem, read_image(path, upright=True))])
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
    """Predict every frame of ``source`` with ``seg`` (and its test-time options); the frames
    of a video are streamed (a temporal model attends over the earlier frames).

    Writes ``<name>_label.png`` and ``<name>_overlay.png`` into ``out_dir``; returns the
    overlay paths.
    """
    from PIL import Image
    from tqdm import tqdm

    source, out_dir = Path(source), Path(out_dir)
    frames = iter_frames(source)
    video = source.suffix.lower() in VIDEO_SUFFIXES  # a temporal model carries its state
    seg.reset()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for n, (name, image) in enumerate(tqdm(frames, desc="predict", leave=False,
                                           disable=not progress)):
        if limit is not None and n >= limit:
            break
        labels = seg.stream(image) if video else seg(image)
        save_label_png(np.asarray(labels), seg.palette, out_dir / f"{name}_label.png")
        path = out_dir / f"{name}_overlay.png"
        Image.fromarray(seg.overlay(image, labels)).save(path)
        written.append(path)
    return written


def predict_video(
    seg: Segmenter,
    source: str | Path,
    out_path: str | Path,
    every: int = 1,
    max_frames: int | None = None,
    alpha: float = 0.5,
    progress: bool = True,
) -> dict[str, Any]:
    """Overlay video of ``source``: every ``every``-th frame predicted (streamed), at most
    ``max_frames``, written to ``out_path`` at the input's frame rate / ``every``.

    Returns ``frames``, ``seconds`` (end to end: decode, predict, encode), ``fps`` and
    ``model_fps`` (the prediction alone), ``rate`` (output frames per second of video).
    """
    import av
    from tqdm import tqdm

    source, out_path = Path(source), Path(out_path)
    if every < 1 or (max_frames is not None and max_frames < 1):
        raise UsageError(f"every and max_frames must be >= 1, got {every}, {max_frames}")
    if source.suffix.lower() not in VIDEO_SUFFIXES:
        raise UsageError(f"{source}: a video output needs a video input "
                         f"({', '.join(VIDEO_SUFFIXES)})")
    frames = iter_frames(source)
    try:
        with av.open(str(source)) as probe:
            if not probe.streams.video:
                raise DataError(f"{source}: no video stream")
            rate = probe.streams.video[0].average_rate or 25
            total = probe.streams.video[0].frames or None
    except av.error.FFmpegError as e:
        raise DataError(f"{source}: cannot open video ({e})") from None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    seg.reset()
    written, model_seconds, t0 = 0, 0.0, time.perf_counter()
    with av.open(str(out_path), "w") as container:
        stream = None
        for n, (_, image) in enumerate(tqdm(frames, desc="predict", total=total, leave=False,
                                            disable=not progress)):
            if n % every:
                continue
            if max_frames is not None and written >= max_frames:
                break
            t = time.perf_counter()
            labels = seg.stream(image)
            model_seconds += time.perf_counter() - t
            picture = seg.overlay(image, labels, alpha)
            if stream is None:
                stream = _video_stream(container, picture.shape, rate / every)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
            written += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    seconds = time.perf_counter() - t0
    return {"frames": written, "seconds": seconds, "fps": written / seconds if seconds else 0.0,
            "model_fps": written / model_seconds if model_seconds else 0.0,
            "rate": float(rate / every), "path": out_path}


def _video_stream(container: Any, shape: tuple[int, ...], rate: Any) -> Any:
    """An H.264 stream for H×W×3 frames (4:2:0 needs even sides; 4:4:4 otherwise)."""
    from fractions import Fraction

    h, w = shape[:2]
    stream = container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1000))
    stream.width, stream.height = w, h
    stream.pix_fmt = "yuv420p" if h % 2 == 0 and w % 2 == 0 else "yuv444p"
    return stream
