"""Safe outputs: no output may name an input, and every file appears whole or not at all.

* :func:`check_output`: before any work, refuse an output path that names one of the inputs
  (compared as resolved paths, through symbolic links, and with ``os.path.samefile`` where both
  exist), or an existing file of another kind (a checkpoint given as ``--onnx``), unless the
  caller passes ``overwrite``.
* :func:`atomic_path`: a temporary name in the output's folder to write to; it is renamed over
  the output when the writer finishes and removed when it fails, so a failure never leaves a
  half-written file. The file gets the mode any new file gets (``0666 & ~umask``), not the
  ``0600`` of a temporary file.
* :func:`output_folder`: creates an output folder and removes it again (with any parents it
  created) when the work fails before anything was written into it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import UsageError
from .utils import VIDEO_SUFFIXES

# kind of output → test of an existing file that may be replaced without --overwrite
KINDS = {
    "onnx": lambda p: p.suffix.lower() == ".onnx",
    "torchscript": lambda p: _zip_has(p, "/code/"),
    "torch.export": lambda p: p.suffix.lower() == ".pt2",
    "json": lambda p: p.suffix.lower() == ".json",
    "png": lambda p: p.suffix.lower() == ".png",
    "video": lambda p: p.suffix.lower() in VIDEO_SUFFIXES,
}
LABELS = {"onnx": "ONNX", "torchscript": "TorchScript", "torch.export": "torch.export .pt2",
          "json": "JSON", "png": "PNG", "video": "video"}


def _zip_has(path: Path, part: str) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(part in name for name in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (links, ``..`` and hard links included)."""
    a, b = Path(a), Path(b)
    with contextlib.suppress(OSError):
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_output(path: str | Path, option: str, inputs: Iterable[str | Path], kind: str,
                 overwrite: bool = False) -> Path:
    """``path`` as a Path, or UsageError (naming ``option``) when it names one of ``inputs``,
    a folder, or an existing file that is not a ``kind`` file (see :data:`KINDS`) and
    ``overwrite`` is false."""
    path = Path(path)
    for source in inputs:
        if same_file(path, source) and not overwrite:
            return _refuse(f"{option} {path} names the input {source}: choose another output "
                           "(or add --overwrite to replace it)")
    if path.is_dir():
        return _refuse(f"{option} {path} is a folder; give a file name")
    if path.exists() and not overwrite and not KINDS[kind](path):
        return _refuse(f"{option} {path} exists as another kind of file (not {LABELS[kind]}): "
                       "choose another output (or add --overwrite to replace it)")
    return path


def _refuse(message: str) -> Path:
    raise UsageError(message)


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        found = re.search(r"^Umask:\s+([0-7]+)", Path("/proc/self/status").read_text(), re.M)
        if found:
            return int(found.group(1), 8)
    mask = os.umask(0o022)  # no /proc: read it by setting it (and set it back at once)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (hidden, ``.<name>.<random>.tmp`` plus the
    suffix of ``path`` when ``keep_suffix``, for writers that choose the format by it); when the
    block ends, fsync it, give it the umask's mode and rename it over ``path``; when the block
    raises, remove it. A crash at any moment leaves the old ``path`` or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent,
                                suffix=".tmp" + (path.suffix if keep_suffix else ""))
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def output_folder(path: str | Path) -> Iterator[Path]:
    """Create the folder ``path`` (and its parents) for the block; when the block raises,
    remove what was created here if it is still empty (a failed run leaves no empty folder)."""
    path = Path(path)
    created = [p for p in [path, *path.parents] if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
