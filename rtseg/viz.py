"""Pictures of label maps: palette colours, overlays, palette PNG files and the legend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(…)×H×W class indices → (…)×H×W×3 uint8 colours (indices outside the palette: black)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)[:256]
    return table[np.clip(labels, 0, 255).astype(np.uint8)]


def overlay(image: np.ndarray, colors: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend H×W×3 uint8 ``colors`` over H×W×3 uint8 ``image`` (``alpha`` = colour weight)."""
    if image.shape != colors.shape:
        raise ValueError(f"image {image.shape} and colours {colors.shape} differ in shape")
    return (image * (1 - alpha) + colors * alpha).round().astype(np.uint8)


def save_label_png(labels: np.ndarray, palette: Sequence[Sequence[int]], path: Path) -> None:
    """A palette ('P' mode) PNG: pixel values are class indices, shown in the palette colours;
    with more than 256 classes a 16-bit grey PNG of the indices."""
    from PIL import Image

    if labels.max(initial=0) > 255:
        Image.fromarray(labels.astype(np.uint16)).save(path)
        return
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [c for rgb in palette[:256] for c in rgb]
    img.putpalette(flat + [0] * (768 - len(flat)))
    img.save(path)


def save_legend(classes: Sequence[str], palette: Sequence[Sequence[int]], path: Path) -> None:
    """A PNG listing each class on a swatch of its colour, one row per class (the key to the
    label PNGs and overlays)."""
    from PIL import Image, ImageDraw

    row, swatch = 18, 28
    width = swatch + 12 + 7 * max((len(f"{k} {c}") for k, c in enumerate(classes)), default=1) + 8
    img = Image.new("RGB", (width, row * len(classes) + 4), "white")
    draw = ImageDraw.Draw(img)
    for k, (name, rgb) in enumerate(zip(classes, palette, strict=False)):
        y = 2 + row * k
        draw.rectangle([4, y + 1, 4 + swatch, y + row - 2], fill=tuple(int(v) for v in rgb),
                       outline="black")
        draw.text((swatch + 12, y + 3), f"{k} {name}", fill="black")
    img.save(path)
