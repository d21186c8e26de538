"""Prediction on an image, a folder of images or a video file.

Writes, per frame, a label PNG (class indices, palette-coloured for viewing) and a colour
overlay JPEG/PNG of the prediction over the input, with the data set's palette.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.io import read_image
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .inference import predict_logits

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def normalize(image: torch.Tensor) -> torch.Tensor:
    """uint8 3×H×W → float 3×H×W normalised with the training statistics."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image.float() / 255 - mean) / std


def colorize(label: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """H×W class indices → H×W×3 uint8 colours (indices outside the palette are black)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[label]


def overlay(image: np.ndarray, colors: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend H×W×3 uint8 ``colors`` over H×W×3 uint8 ``image``."""
    return (image * (1 - alpha) + colors * alpha).round().astype(np.uint8)


def save_label_png(label: np.ndarray, palette: Sequence[Sequence[int]], path: Path) -> None:
    """A palette ('P' mode) PNG: pixel values are class indices, shown in the palette colours."""
    from PIL import Image

    img = Image.fromarray(label.astype(np.uint8), mode="P")
    flat = [c for rgb in palette for c in rgb]
    img.putpalette(flat + [0] * (768 - len(flat)))
    img.save(path)


def iter_frames(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, uint8 3×H×W) for an image, every image of a folder, or every video frame."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
        for f in files:
            yield f.stem, read_image(f)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        import av

        if not path.is_file():
            raise FileNotFoundError(f"{path}: video not found")
        try:
            container = av.open(str(path))
        except av.error.FFmpegError as e:
            raise ValueError(f"{path}: cannot open video ({e})") from None
        with container:
            for i, frame in enumerate(container.decode(video=0)):
                arr = frame.to_ndarray(format="rgb24")
                yield f"{path.stem}_{i:06d}", torch.from_numpy(arr).permute(2, 0, 1).contiguous()
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        yield path.stem, read_image(path)
    else:
        raise ValueError(f"{path}: not a folder, an image ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                         f"or a video ({', '.join(sorted(VIDEO_SUFFIXES))})")


@torch.no_grad()
def predict_path(
    model: nn.Module,
    source: str | Path,
    out_dir: str | Path,
    palette: Sequence[Sequence[int]],
    device: torch.device | str = "cpu",
    mode: str = "whole",
    crop: tuple[int, int] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    limit: int | None = None,
) -> list[Path]:
    """Predict every frame of ``source``; write ``<name>_label.png`` and ``<name>_overlay.png``.

    Returns the written overlay paths.
    """
    from PIL import Image
    from tqdm import tqdm

    source, out_dir = Path(source), Path(out_dir)
    if not source.exists():
        raise FileNotFoundError(f"{source}: input not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    written = []
    for n, (name, image) in enumerate(tqdm(iter_frames(source), desc="predict", leave=False)):
        if limit is not None and n >= limit:
            break
        x = normalize(image)[None].to(device)
        probs = predict_logits(model, x, mode=mode, crop=crop, scales=scales, flip=flip)
        label = probs.argmax(1)[0].to(torch.uint8).cpu().numpy()
        save_label_png(label, palette, out_dir / f"{name}_label.png")
        rgb = image.permute(1, 2, 0).numpy()
        path = out_dir / f"{name}_overlay.png"
        Image.fromarray(overlay(rgb, colorize(label, palette))).save(path)
        written.append(path)
    return written
