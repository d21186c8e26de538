"""A user's own data set: an image folder, a mask folder and a small class file.

Layout (``split`` given: everything below ``root/{split}/``; the class file may stay in
``root``)::

    root/images/{stem}.png|.jpg|.jpeg|.bmp    RGB images
    root/masks/{stem}.png                     single-channel masks of class indices
                                               (8-bit grey or palette PNG; never JPEG)
    root/classes.yaml | classes.yml | classes.json | classes.txt

Class file, YAML or JSON: a list of classes, or a mapping with ``classes`` and an optional
``ignore_index`` (default 255). Each class is ``{name: ..., color: [R, G, B]}``; ``color`` is
optional (a default palette fills it in)::

    classes:
      - {name: road, color: [128, 64, 128]}
      - {name: car, color: [0, 0, 142]}
    ignore_index: 255

Text: one class per line, ``name`` or ``name R G B`` (names may contain spaces), blank lines
and ``#`` comments skipped, and an optional line ``ignore_index: 255``.

Mask value i is class i of the file (0-based); ``ignore_index`` marks unlabelled pixels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..utils import IMAGE_SUFFIXES
from .io import DataError, FilePairDataset, PathLike, Transform, require_dir

CLASS_FILES = ("classes.yaml", "classes.yml", "classes.json", "classes.txt")


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours: the bits of the class index spread over R, G, B (high bits
    first), the usual scheme for label maps without a colour table."""
    palette = []
    for index in range(n):
        rgb = [0, 0, 0]
        value = index
        for bit in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << bit
            value >>= 3
        palette.append((rgb[0], rgb[1], rgb[2]))
    return palette


def _parse_color(value: Any, path: Path, where: str) -> tuple[int, int, int]:
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    )
    if not ok:
        raise DataError(f"{path}: {where}: color must be three integers in 0..255, got {value!r}")
    return (value[0], value[1], value[2])


def _parse_text(text: str, path: Path) -> tuple[list[dict[str, Any]], int]:
    entries: list[dict[str, Any]] = []
    ignore_index = 255
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("ignore_index"):
            _, _, value = line.partition(":")
            try:
                ignore_index = int(value)
            except ValueError:
                raise DataError(f"{path}: line {number}: bad ignore_index line {raw!r}") from None
            continue
        words = line.split()
        if len(words) >= 4 and all(w.lstrip("-").isdigit() for w in words[-3:]):
            entries.append({"name": " ".join(words[:-3]), "color": [int(w) for w in words[-3:]]})
        elif any(w.lstrip("-").isdigit() for w in words[-3:]) and len(words) > 1:
            raise DataError(f"{path}: line {number}: expected 'name' or 'name R G B', got {raw!r}")
        else:
            entries.append({"name": line})
    return entries, ignore_index


def read_classes(path: PathLike) -> tuple[list[str], list[tuple[int, int, int]], int]:
    """Read a class file (format in the module docstring).

    Returns:
        ``(names, palette, ignore_index)``.

    Raises:
        DataError: missing, unparsable or invalid file (no classes, duplicate or empty names,
            bad colours, an ignore_index inside [0, K)).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: missing class file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable class file ({err})") from err

    suffix = path.suffix.lower()
    if suffix == ".txt":
        entries, ignore_index = _parse_text(text, path)
    else:
        if suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: invalid JSON ({err})") from err
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as err:
                raise DataError(f"{path}: reading YAML needs pyyaml (pip install pyyaml)") from err
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise DataError(f"{path}: invalid YAML ({err})") from err
        else:
            raise DataError(f"{path}: unknown class file type; use .yaml, .yml, .json or .txt")
        ignore_index = 255
        if isinstance(data, dict):
            unknown = set(data) - {"classes", "ignore_index"}
            if unknown:
                raise DataError(f"{path}: unknown keys {sorted(unknown)}")
            ignore_index = data.get("ignore_index", 255)
            data = data.get("classes")
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a list of classes or a mapping with 'classes'")
        entries = data

    if not entries:
        raise DataError(f"{path}: no classes")
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise DataError(f"{path}: ignore_index must be an integer, got {ignore_index!r}")
    names: list[str] = []
    colors: list[tuple[int, int, int] | None] = []
    for i, entry in enumerate(entries):
        where = f"class {i}"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not set(entry) <= {"name", "color"}:
            raise DataError(f"{path}: {where}: expected {{name: ..., color: [R, G, B]}}, "
                            f"got {entry!r}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{path}: {where}: missing or empty name")
        if name in names:
            raise DataError(f"{path}: {where}: duplicate class name {name!r}")
        names.append(name)
        color = entry.get("color")
        colors.append(None if color is None else _parse_color(color, path, where))
    if 0 <= ignore_index < len(names):
        raise DataError(
            f"{path}: ignore_index {ignore_index} is a class index (0..{len(names) - 1})"
        )
    defaults = default_palette(len(names))
    palette = [c if c is not None else d for c, d in zip(colors, defaults, strict=True)]
    return names, palette, ignore_index


class FolderDataset(FilePairDataset):
    """Images and masks in two folders with matching file stems, classes from a small file.

    Args:
        root: data set folder (layout and class-file format in the module docstring).
        split: optional sub-folder, e.g. "train" reads ``root/train/images`` etc.
        transform: ``transform(image, label, generator)``, see :class:`SegmentationDataset`.
        images: name of the image folder.
        masks: name of the mask folder.
        classes_file: class file path (relative to ``root`` unless absolute); by default the
            first of classes.yaml/.yml/.json/.txt found in ``root/{split}`` then ``root``.

    ``load(i)`` gives (image uint8 3×H×W, label int64 H×W in [0, K) ∪ {ignore_index}).
    ``name(i)`` is the file stem.
    """

    def __init__(
        self,
        root: PathLike,
        split: str | None = None,
        transform: Transform | None = None,
        images: str = "images",
        masks: str = "masks",
        classes_file: PathLike | None = None,
        strict: bool = True,
    ) -> None:
        self.strict, self.problems = strict, []
        self.root = require_dir(root, "data set root")
        self.split = split
        self.transform = transform
        base = require_dir(self.root / split, f"split {split!r}") if split else self.root
        self.classes, self.palette, self.ignore_index = read_classes(
            self._find_classes_file(base, classes_file)
        )
        image_dir = require_dir(base / images, "image")
        mask_dir = require_dir(base / masks, "mask")
        self.samples = self._pair(image_dir, mask_dir)

    def _find_classes_file(self, base: Path, classes_file: PathLike | None) -> Path:
        if classes_file is not None:
            return self.root / classes_file  # an absolute classes_file replaces root
        for folder in dict.fromkeys([base, self.root]):
            for candidate in CLASS_FILES:
                if (folder / candidate).is_file():
                    return folder / candidate
        raise DataError(f"{base}: no class file; expected one of {', '.join(CLASS_FILES)}")

    def _pair(self, image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
        images: dict[str, Path] = {}
        for path in sorted(image_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                if path.stem in images:
                    self._problem(f"{path}: two images with stem {path.stem!r} "
                                  f"(also {images[path.stem]})")
                    continue
                images[path.stem] = path
        masks: dict[str, Path] = {}
        for path in sorted(mask_dir.iterdir()):
            if not path.is_file():
                continue
            if path.suffix.lower() == ".png":
                masks[path.stem] = path
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                self._problem(f"{path}: masks must be PNG (lossless), not {path.suffix}")
        if not images:
            raise DataError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
        for stem, path in masks.items():
            if stem not in images:
                self._problem(f"{path}: mask without image; no {stem}.* in {image_dir}")
        samples = []
        for stem, path in images.items():
            if stem not in masks:
                self._problem(f"{path}: image without mask; missing {mask_dir / stem}.png")
                continue
            samples.append((path, masks[stem]))
        return samples
