"""Prediction on an image, a folder of images or a video file, written as files or a video.

:func:`predict_path` writes, per frame, ``<name>_label.png`` (class indices, palette-coloured
for viewing) and ``<name>_overlay.png`` (the prediction's colours over the input).
:func:`predict_video` writes the overlays of a video as a video (H.264, the input's frame rate
divided by ``every``) and measures the frames per second achieved. Both also write a legend
(each class's name on its colour) and neither replaces an input (see :mod:`rtseg.outputs`):
every file is written whole under a temporary name first, and a failed run leaves no empty
folder. Before a frame is predicted whole, the memory the pass needs is estimated
(:mod:`rtseg.inference.memory`); when it exceeds what is available (or ``max_memory``), the frame is
predicted in sliding windows that fit, with a one-line note, or refused when nothing fits.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.io import DataError, read_image
from .errors import InputNotFoundError, UsageError
from .inference.memory import PassCost, available_bytes, format_bytes, plan
from .inference.tta import TTAOptions
from .outputs import atomic_path, check_output, output_folder, same_file
from .segmenter import Segmenter
from .utils import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from .viz import save_label_png, save_legend


def input_files(path: Path) -> list[Path]:
    """The files ``path`` names: an image, a video, or a folder's images (hidden files, such as
    an interrupted write's temporary, left out); checked before any frame is read."""
    if not path.exists():
        raise InputNotFoundError(f"{path}: input not found")
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise DataError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        return files
    if path.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
        return [path]
    raise UsageError(f"{path}: not a folder, an image ({', '.join(IMAGE_SUFFIXES)}) "
                     f"or a video ({', '.join(VIDEO_SUFFIXES)})")


def iter_frames(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, uint8 3×H×W) for an image, every image of a folder (each turned upright by its
    EXIF orientation), or every video frame.

    The path is checked here, before the first frame is read.
    """
    files = input_files(path)
    if not path.is_dir() and path.suffix.lower() in VIDEO_SUFFIXES:
        return _video_frames(path)
    return ((f.stem, read_image(f, upright=True)) for f in files)


def _video_frames(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise DataError(f"{path}: cannot open video ({e})") from None
    i = -1
    with container:
        if not container.streams.video:
            raise DataError(f"{path}: no video stream (no frames to predict)")
        try:
            for i, frame in enumerate(container.decode(video=0)):
                arr = frame.to_ndarray(format="rgb24")
                yield f"{path.stem}_{i:06d}", torch.from_numpy(arr).permute(2, 0, 1)
        except av.error.FFmpegError as e:
            raise DataError(f"{path}: cannot decode video ({e})") from None
    if i < 0:
        raise DataError(f"{path}: the video has no frames")


def _note(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)  # on its own line beside a progress bar


class MemoryGuard:
    """Test-time options that keep a frame's pass within ``limit`` bytes (default: the memory
    available now), decided once per frame size; ``note`` gets the one-line notice of a
    switch to sliding windows."""

    def __init__(self, seg: Segmenter, limit: int | None = None,
                 note: Callable[[str], None] | None = None) -> None:
        self.seg, self.limit = seg, limit if limit is not None else available_bytes()
        self.note = note or _note
        self.active = (self.limit is not None
                       and TTAOptions.from_mapping(seg.options).single_pass)
        self.cost: PassCost | None = None
        self.decided: dict[tuple[int, int], dict[str, Any]] = {}

    def options(self, name: str, image: torch.Tensor) -> dict[str, Any]:
        h, w = image.shape[-2:]
        if not self.active:
            return {}
        if (h, w) not in self.decided:
            self.cost = self.cost or PassCost(self.seg)
            need, crop = plan(self.cost, h, w, self.limit)
            if crop is None:
                self.decided[h, w] = {}
            else:
                if getattr(self.seg.model, "temporal", False):
                    raise UsageError(f"{name}: a whole {w}×{h} frame needs about "
                                     f"{format_bytes(self.cost.whole(h, w))}, more than the "
                                     f"{format_bytes(self.limit)} available, and a temporal "
                                     "model cannot predict in windows: raise --max-memory")
                self.note(f"{name}: a whole-image pass of {w}×{h} needs about "
                          f"{format_bytes(self.cost.whole(h, w))}, more than the "
                          f"{format_bytes(self.limit)} available; predicting in sliding "
                          f"windows of {crop[0]}×{crop[1]} (--mode slide --crop {crop[0]} "
                          f"{crop[1]}), about {format_bytes(need)}")
                self.decided[h, w] = {"mode": "slide", "crop": crop, "stride": crop}
        return self.decided[h, w]


def _check_folder(out_dir: Path, inputs: list[Path], names: list[str],
                  overwrite: bool) -> None:
    """UsageError, before any work, when the output folder or a file to be written in it
    names an input (or the folder is an existing file)."""
    for f in inputs:
        if same_file(out_dir, f):
            raise UsageError(f"--out {out_dir} names the input {f}: give an output folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is an existing file, not a folder: give a folder "
                         "(or a video file name for a video input)")
    for name in names:
        check_output(out_dir / name, "--out", inputs, "png", overwrite)


def _labels(seg: Segmenter, image: torch.Tensor, video: bool, options: dict[str, Any]) -> Any:
    """A temporal model streams a video's frames (its state carried); else one call."""
    return seg.stream(image) if video and not options else seg(image, **options)


def predict_path(
    seg: Segmenter,
    source: str | Path,
    out_dir: str | Path,
    limit: int | None = None,
    progress: bool = True,
    max_memory: int | None = None,
    overwrite: bool = False,
    note: Callable[[str], None] | None = None,
) -> list[Path]:
    """Predict every frame of ``source`` with ``seg`` (and its test-time options); the frames
    of a video are streamed (a temporal model attends over the earlier frames).

    Writes ``<name>_label.png`` and ``<name>_overlay.png`` into ``out_dir``, and
    ``legend.png``; returns the overlay paths. ``max_memory``: bytes a pass may use (default:
    the memory available; see :class:`MemoryGuard`, whose notes go to ``note``).
    ``overwrite``: allow replacing an input (never by default).
    """
    from PIL import Image
    from tqdm import tqdm

    source, out_dir = Path(source), Path(out_dir)
    frames = iter_frames(source)
    inputs = input_files(source)
    video = source.suffix.lower() in VIDEO_SUFFIXES  # a temporal model carries its state
    stems = [] if video else [f.stem for f in inputs][:limit]
    _check_folder(out_dir, inputs, ["legend.png"] + [f"{stem}_{kind}.png" for stem in stems
                                                     for kind in ("label", "overlay")],
                  overwrite)
    guard = MemoryGuard(seg, max_memory, note)
    seg.reset()
    written = []
    with output_folder(out_dir):
        for n, (name, image) in enumerate(tqdm(frames, desc="predict", leave=False,
                                               disable=not progress)):
            if limit is not None and n >= limit:
                break
            labels = _labels(seg, image, video, guard.options(name, image))
            label_path = check_output(out_dir / f"{name}_label.png", "--out", inputs, "png",
                                      overwrite)
            path = check_output(out_dir / f"{name}_overlay.png", "--out", inputs, "png",
                                overwrite)
            with atomic_path(label_path) as tmp:
                save_label_png(np.asarray(labels), seg.palette, tmp)
            with atomic_path(path) as tmp:
                Image.fromarray(seg.overlay(image, labels)).save(tmp)
            written.append(path)
        with atomic_path(out_dir / "legend.png") as tmp:
            save_legend(seg.classes, seg.palette, tmp)
    return written


def predict_video(
    seg: Segmenter,
    source: str | Path,
    out_path: str | Path,
    every: int = 1,
    max_frames: int | None = None,
    alpha: float = 0.5,
    progress: bool = True,
    max_memory: int | None = None,
    overwrite: bool = False,
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Overlay video of ``source``: every ``every``-th frame predicted (streamed), at most
    ``max_frames``, written to ``out_path`` at the input's frame rate / ``every``, and its
    legend to ``<out stem>_legend.png``; ``max_memory``, ``overwrite`` and ``note`` as in
    :func:`predict_path`.

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
    legend = out_path.with_name(f"{out_path.stem}_legend.png")
    check_output(out_path, "--out", [source], "video", overwrite)
    check_output(legend, "--out", [source], "png", overwrite)
    try:
        with av.open(str(source)) as probe:
            if not probe.streams.video:
                raise DataError(f"{source}: no video stream (no frames to predict)")
            rate = probe.streams.video[0].average_rate or 25
            total = probe.streams.video[0].frames or None
    except av.error.FFmpegError as e:
        raise DataError(f"{source}: cannot open video ({e})") from None
    guard = MemoryGuard(seg, max_memory, note)
    seg.reset()
    written, model_seconds, t0 = 0, 0.0, time.perf_counter()
    with output_folder(out_path.parent), atomic_path(out_path) as tmp, \
            av.open(str(tmp), "w") as container:
        stream = None
        for n, (name, image) in enumerate(tqdm(frames, desc="predict", total=total,
                                               leave=False, disable=not progress)):
            if n % every:
                continue
            if max_frames is not None and written >= max_frames:
                break
            t = time.perf_counter()
            labels = _labels(seg, image, True, guard.options(name, image))
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
    with atomic_path(legend) as tmp:
        save_legend(seg.classes, seg.palette, tmp)
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
