"""Checked image/label readers and the dataset base class shared by every loader.

Every reader and check raises :class:`DataError` with a message that names the file and the
problem, so a broken data set fails at the first bad sample with an actionable message instead
of a shape error deep inside the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import RtsegError, UsageError
from .images import rgb_from_pil
from .images import upright as _upright

PathLike = str | Path
Transform = Callable[
    [torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]
]

# Label modes that hold one value per pixel. "1" is a bilevel image, "I;16*"/"I" 16/32-bit.
_SINGLE_CHANNEL_LABEL_MODES = {"L", "P", "1", "I", "I;16", "I;16L", "I;16B", "I;16N"}
_MAX_BAD_VALUES_SHOWN = 10


class DataError(RtsegError, ValueError):
    """A data file or folder is missing, unreadable or inconsistent; the message names it."""


# Decoded size limit: Pillow's own default (89 478 485 pixels, 43 Cityscapes frames). A header
# that claims more is refused before any pixel is decoded (a decompression bomb otherwise).
MAX_PIXELS = 89_478_485


def _open_checked(path: PathLike, what: str) -> Image.Image:
    """Open ``path`` with PIL, check its size, verify its structure and decode it fully.

    Any failure of the decoder on a corrupt file (Pillow raises OSError, SyntaxError,
    ValueError, EOFError, struct.error, IndexError… depending on the format and the damage)
    becomes a :class:`DataError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: missing {what} file")
    if not path.is_file():
        raise DataError(f"{path}: {what} path is not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # verify() walks the file structure (PNG chunk CRCs, truncation) without decoding;
            # it leaves the image unusable, so the file is opened again and decoded by load(),
            # which catches corrupt pixel data that verify() can not see.
            with Image.open(path) as probe:
                _check_size(probe, path, what)
                probe.verify()
            image = Image.open(path)
            _check_size(image, path, what)
            image.load()
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise DataError(f"{path}: {what} file too large to decode safely ({err})") from None
    except MemoryError:
        raise DataError(f"{path}: {what} image too large for the memory") from None
    except Exception as err:  # noqa: BLE001 - a corrupt file may break the decoder anywhere
        raise DataError(f"{path}: unreadable or truncated {what} file "
                        f"({type(err).__name__}: {err})") from None
    return image


def worker_message(err: Exception) -> str:
    """The message of an error re-raised by a DataLoader worker, without the worker's traceback.

    PyTorch re-raises a worker's exception with the text "Caught X in DataLoader worker …
    Original Traceback …"; its last line is ``module.X: <the original message>``.
    """
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    name = f"{type(err).__module__}.{type(err).__name__}: "
    for prefix in (name, f"{type(err).__name__}: "):
        if last.startswith(prefix):
            return last[len(prefix):]
    return last


def _check_size(image: Image.Image, path: Path, what: str) -> None:
    w, h = image.size
    if w < 1 or h < 1:
        raise DataError(f"{path}: {what} file has an empty size {w}×{h}")
    if w * h > MAX_PIXELS:
        raise DataError(f"{path}: {what} file is {w}×{h} = {w * h:,} pixels, more than the "
                        f"{MAX_PIXELS:,} rtseg decodes (rtseg.data.io.MAX_PIXELS)")


def read_image(path: PathLike, upright: bool = False) -> torch.Tensor:
    """Read an image file as RGB (the rules of :mod:`rtseg.data.images`).

    Palette, grey, RGBA/LA (alpha dropped), CMYK and other PIL modes are converted to RGB;
    16-bit grey images are scaled to 8 bits (value >> 8). With ``upright`` the EXIF orientation
    is applied, as viewers show the photo (inference only: data sets' labels are stored for the
    pixels as stored).

    Returns:
        uint8 tensor 3×H×W.

    Raises:
        DataError: missing file, a file PIL can not read completely (corrupt or truncated), an
            image too large to decode safely, or one with floating-point or 32-bit values.
    """
    with _open_checked(path, "image") as image:
        try:
            array = rgb_from_pil(_upright(image) if upright else image)
        except UsageError as e:
            raise DataError(f"{path}: {e}") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def read_label(path: PathLike) -> torch.Tensor:
    """Read a single-channel label map; a palette PNG gives its palette indices.

    Returns:
        H×W tensor: uint8 for 8-bit files (modes L, P, 1), int64 for 16/32-bit files.

    Raises:
        DataError: missing or unreadable file, or an image with more than one channel
            (e.g. a colour-coded RGB mask) or floating-point values.
    """
    path = Path(path)
    with _open_checked(path, "label") as image:
        if image.mode not in _SINGLE_CHANNEL_LABEL_MODES:
            bands = len(image.getbands())
            problem = (
                f"label has {bands} channels (mode {image.mode})"
                if bands > 1
                else f"label has unsupported mode {image.mode} (floating-point values?)"
            )
            raise DataError(
                f"{path}: {problem}; expected a single-channel image of class indices "
                "(PIL mode L or P)"
            )
        array = np.array(image)
    if array.dtype in (np.uint8, np.bool_):
        return torch.from_numpy(array.astype(np.uint8, copy=False))
    return torch.from_numpy(array.astype(np.int64))


def check_pair(
    image: torch.Tensor, label: torch.Tensor, image_path: PathLike, label_path: PathLike
) -> None:
    """Raise :class:`DataError` unless image (C×H×W) and label (H×W) have the same H×W."""
    image_hw = tuple(image.shape[-2:])
    label_hw = tuple(label.shape[-2:])
    if image_hw != label_hw:
        raise DataError(
            f"size mismatch: image {image_path} is {image_hw[1]}×{image_hw[0]} (W×H) but "
            f"label {label_path} is {label_hw[1]}×{label_hw[0]}"
        )


def label_values(label: torch.Tensor) -> torch.Tensor:
    """The distinct values of an integer label tensor, sorted (bincount for uint8: cheap)."""
    if label.dtype == torch.uint8:
        return torch.bincount(label.reshape(-1), minlength=256).nonzero().reshape(-1)
    return torch.unique(label)


def check_label_values(
    label: torch.Tensor, num_classes: int, ignore_index: int, path: PathLike
) -> None:
    """Raise :class:`DataError` if ``label`` holds a value outside [0, K) ∪ {ignore_index}.

    Args:
        label: integer tensor of any shape (typically H×W).
        num_classes: K.
        ignore_index: the one value allowed outside [0, K).
        path: the label file, named in the message.
    """
    values = label_values(label)
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_index)]
    if bad.numel():
        shown = ", ".join(str(v) for v in bad[:_MAX_BAD_VALUES_SHOWN].tolist())
        extra = bad.numel() - _MAX_BAD_VALUES_SHOWN
        more = f" (+{extra} more)" if extra > 0 else ""
        raise DataError(
            f"{path}: label values {shown}{more} are outside the {num_classes} classes "
            f"[0, {num_classes - 1}] and the ignore value {ignore_index}"
        )


def require_dir(path: PathLike, what: str) -> Path:
    """Return ``path`` as a Path, or raise :class:`DataError` naming it if it is not a folder."""
    path = Path(path)
    if not path.is_dir():
        problem = "is not a folder" if path.exists() else "does not exist"
        raise DataError(f"{path}: {what} folder {problem}")
    return path


def sorted_glob(folder: Path, pattern: str) -> list[Path]:
    """Files (not folders) in ``folder`` matching ``pattern``, sorted by path."""
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def hex_palette(*rows: str) -> list[tuple[int, int, int]]:
    """``"rrggbb rrggbb ..."`` strings → RGB tuples, in order (compact colour tables)."""
    return [(int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16))
            for row in rows for c in row.split()]


def nested_root(root: PathLike, what: str, *inner: str) -> Path:
    """``root`` (which must be a folder) or the first of its sub-folders ``inner`` that exists,
    so that a data set's root may be given as the release folder or the folder holding it."""
    root = require_dir(root, what)
    return next((root / i for i in inner if (root / i).is_dir()), root)


def reduce_zero_label(label: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """File value 0 ("other"/background) → ``ignore_index``, 1..K → 0..K-1; any other value is
    kept as it is, so that the range check names it as it stands in the file."""
    label = label.long()
    shifted = torch.where((label >= 1) & (label <= num_classes), label - 1, label)
    return shifted.masked_fill(label == 0, ignore_index)


class SegmentationDataset(Dataset):
    """Base class of every rtseg data set; subclasses set the class table and the samples.

    Contract (relied on by training, evaluation and prediction code):

    * ``classes`` (K names), ``palette`` (K RGB tuples), ``num_classes`` (K), ``ignore_index``.
    * ``len(ds)``; ``ds.name(i)``: a file stem / id used to name prediction files.
    * ``ds.load(i)``: the raw, checked sample ``(image uint8 3×H×W, label int64 H×W)`` with
      label values in [0, K) ∪ {ignore_index}.
    * ``ds[i]`` or ``ds[(i, seed)]``: ``transform(image, label, generator)`` when a transform
      is set, else ``(image float32 3×H×W in [0, 1], label int64 H×W)``. With a seed the
      generator is ``torch.Generator().manual_seed(seed)``, so a sample is reproducible in
      any worker process; a bare index seeds the generator from the global torch RNG.

    Subclasses implement ``__len__``, ``name`` and ``load``, take ``strict`` and report
    pairing problems through :meth:`_problem`.
    """

    classes: list[str]
    palette: list[tuple[int, int, int]]
    ignore_index: int = 255
    transform: Transform | None = None
    needs_root: bool = True  # read from a folder (False: made in memory, e.g. Synthetic)
    # strict=False (``rtseg check-data``): a sample whose files do not pair up is left out and
    # its problem kept in ``problems`` instead of raising, so one scan reports them all.
    strict: bool = True
    problems: list[str]

    def _problem(self, message: str) -> None:
        """Raise :class:`DataError` (strict), or keep ``message`` and go on."""
        if self.strict:
            raise DataError(message)
        self.problems.append(message)

    @property
    def num_classes(self) -> int:
        """K, the number of classes."""
        return len(self.classes)

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, index: int) -> str:
        """Identifier of sample ``index`` (file stem), used for prediction file names."""
        raise NotImplementedError

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw sample ``index``: (image uint8 3×H×W, label int64 H×W), checked."""
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        """Accept Python-style negative indices; raise IndexError outside the data set."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of {n}")
        return index % n

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = index if isinstance(index, tuple) else (index, None)
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        image, label = self.load(self._check_index(int(index)))
        if self.transform is None:
            return image.float().div_(255.0), label
        return self._transformed(image, label, int(seed))

    def _transformed(self, image: torch.Tensor, label: torch.Tensor,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``transform`` with a generator seeded by ``seed`` (a clip applies it per frame)."""
        return self.transform(image, label, torch.Generator().manual_seed(seed))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(samples={len(self)}, classes={self.num_classes})"


class FilePairDataset(SegmentationDataset):
    """A data set of (image file, label file) pairs held in ``self.samples``.

    ``name(i)`` is the image's file stem; ``load(i)`` reads both files, checks that their sizes
    match, turns file values into class indices with :meth:`map_label` and checks the result.
    Subclasses fill ``samples`` and the class table, and override :meth:`map_label` when the
    files use other values than the class indices (e.g. CamVid's void).
    """

    samples: list[tuple[Path, Path]]

    def __len__(self) -> int:
        return len(self.samples)

    def name(self, index: int) -> str:
        return self.samples[self._check_index(index)][0].stem

    def map_label(self, label: torch.Tensor) -> torch.Tensor:
        """File values (H×W) → class indices and ``ignore_index``; the identity by default."""
        return label

    def _start(
        self, root: PathLike, split: str, splits: Iterable[str], what: str,
        transform: Transform | None, strict: bool, *inner: str,
    ) -> None:
        """The common start of a loader: check ``split``, set ``strict``, ``problems``,
        ``split``, ``transform`` and ``root`` (``root`` or its first sub-folder ``inner``)."""
        if split not in splits:
            raise DataError(f"unknown {what} split {split!r}; use one of {tuple(splits)}")
        self.strict, self.problems = strict, []
        self.root = nested_root(root, f"{what} root", *inner)
        self.split, self.transform = split, transform

    def _pair_by_name(
        self, image_dir: Path, label_dir: Path, image_suffix: str, label_suffix: str
    ) -> list[tuple[Path, Path]]:
        """Pair ``image_dir/{stem}{image_suffix}`` with ``label_dir/{stem}{label_suffix}``.

        An image without its label and a label without its image are reported through
        :meth:`_problem` (the image is left out); an image folder without any image raises.
        """
        images = sorted_glob(image_dir, f"*{image_suffix}")
        if not images:
            raise DataError(f"{image_dir}: no *{image_suffix} images found")
        stems = {p.name[: -len(image_suffix)] for p in images}
        for label_path in sorted_glob(label_dir, f"*{label_suffix}"):
            stem = label_path.name[: -len(label_suffix)]
            if stem not in stems:
                self._problem(f"{label_path}: label without image; missing "
                              f"{image_dir / (stem + image_suffix)}")
        samples = []
        for image_path in images:
            label_path = label_dir / (image_path.name[: -len(image_suffix)] + label_suffix)
            if not label_path.is_file():
                self._problem(f"{image_path}: image without label; missing {label_path}")
                continue
            samples.append((image_path, label_path))
        return samples

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.samples[self._check_index(index)]
        image = read_image(image_path)
        label = read_label(label_path)
        check_pair(image, label, image_path, label_path)
        label = self.map_label(label)
        check_label_values(label, self.num_classes, self.ignore_index, label_path)
        return image, label.long()
