"""How much memory a prediction or an export needs, before it runs, and what fits.

**The estimate.** The model is run on two small inputs (96×128 and 192×256 pixels, ``p1`` and
``p2`` pixels) while every tensor that PyTorch's operators allocate is tracked until it is
freed (a ``TorchDispatchMode``); the peak of the bytes alive at once, ``b1`` and ``b2``, is
fitted by ``b(p) = a·p + c·p²`` (``c`` covers attention whose memory grows with the square of
the pixels; ``c = 0`` when the two points say linear), and scaled to the input's pixels. What
the tracker cannot see (convolution workspaces, allocator slack) is covered by a factor of
:data:`MARGIN`; the picture written after the pass (colours and a float64 blend for the
overlay) adds :data:`PICTURE_BYTES` per pixel. Sliding windows cost one window's pass plus the
full-size accumulators, measured the same way (``a_slide·p``). For an exported file run by
ONNX Runtime or OpenVINO the tracker sees nothing; there the rise of the process's peak
resident memory (:func:`rtseg.bench.memory.peak_extra_bytes`) is measured instead, and without
it no estimate is made. The estimate is for planning (refusing or switching before a pass
that would run out of memory), not an exact figure.

**Available memory**: ``MemAvailable`` of ``/proc/meminfo`` (or the free pages that
``os.sysconf`` reports), lowered to the cgroup's limit minus its use where one is set; a
``--max-memory`` setting replaces it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from ..errors import UsageError

MARGIN = 1.5  # unseen workspaces and allocator slack, on top of the tracked tensors
PICTURE_BYTES = 100  # per pixel after the pass: labels, colours, the overlay's float64 blend
_SIZES = ((96, 128), (192, 256))
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class _PeakTracker(TorchDispatchMode):
    """Bytes of the storages allocated by operators inside the mode, alive at once: now and
    at the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and not t.is_meta:
                storage = t.untyped_storage()
                key, size = storage.data_ptr(), storage.nbytes()
                if size and key not in self._seen:  # views and in-place results are not new
                    self._seen.add(key)
                    self.live += size
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(t, self._free, key, size)
        return out

    def _free(self, key: int, size: int) -> None:
        self._seen.discard(key)
        self.live -= size


def tracked_peak(run: Callable[[], Any]) -> int:
    """Peak bytes of tensors alive at once that PyTorch operators allocated during ``run()``."""
    tracker = _PeakTracker()
    with torch.no_grad(), tracker:
        out = run()
    del out
    return tracker.peak


def fit(points: list[tuple[int, int]]) -> tuple[float, float]:
    """``(a, c)`` of ``b = a·p + c·p²`` through two (pixels, bytes) points, both ≥ 0."""
    (p1, b1), (p2, b2) = points
    c = max((b2 / p2 - b1 / p1) / (p2 - p1), 0.0)
    a = max(b1 / p1 - c * p1, b2 / p2 - c * p2, 0.0)
    return a, c


def estimate(coeffs: tuple[float, float], pixels: int) -> int:
    """Bytes for ``pixels`` from fitted ``(a, c)``, with the :data:`MARGIN`."""
    a, c = coeffs
    return int(MARGIN * (a * pixels + c * pixels * pixels))


def _image(size: tuple[int, int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, *size), generator=g, dtype=torch.uint8)


class PassCost:
    """Measured memory of a :class:`~rtseg.segmenter.Segmenter`'s passes (see the module doc).

    ``whole(h, w)``: bytes of a whole-image pass and its pictures; ``slide(h, w, crop)``: of a
    sliding-window pass with windows of ``crop``; None where nothing could be measured.
    """

    def __init__(self, seg: Any) -> None:
        self.seg = seg
        whole = self._points({})
        self._whole = fit(whole) if whole else None
        self._slide: float | None = None  # measured when first needed

    def _slide_rate(self) -> float | None:
        """Bytes per pixel of the full-size accumulators of a sliding-window pass: the slope
        between the two sizes (the windows, of one size, cost the same at both)."""
        if self._slide is None:
            crop = (_SIZES[0][0] // 2, _SIZES[0][1] // 2)
            points = self._points({"mode": "slide", "crop": crop, "stride": crop})
            if points is None:
                return None
            self._slide = max((points[1][1] - points[0][1]) / (points[1][0] - points[0][0]), 0.0)
        return self._slide

    def _points(self, options: dict) -> list[tuple[int, int]] | None:
        """(pixels, peak bytes) of a pass at each of the two small sizes, or None."""
        points = []
        for size in _SIZES:
            image = _image(size)
            if isinstance(self.seg.model, torch.nn.Module):
                peak = tracked_peak(lambda image=image: self.seg(image, **options))
            else:
                from .peak_memory import peak_extra_bytes

                peak = peak_extra_bytes(lambda image=image: self.seg(image, **options),
                                        torch.device("cpu"))
            if peak is None:
                return None
            points.append((size[0] * size[1], peak))
        return points

    def whole(self, h: int, w: int) -> int | None:
        if self._whole is None:
            return None
        return estimate(self._whole, h * w) + PICTURE_BYTES * h * w

    def slide(self, h: int, w: int, crop: tuple[int, int]) -> int | None:
        rate = self._slide_rate()
        if rate is None or self._whole is None:
            return None
        accumulators = estimate((rate, 0.0), h * w)
        return accumulators + estimate(self._whole, crop[0] * crop[1]) + PICTURE_BYTES * h * w


def plan(cost: PassCost, h: int, w: int, limit: int) -> tuple[int, tuple[int, int] | None]:
    """(bytes needed, window) for an h×w image within ``limit`` bytes: window None for a
    whole-image pass that fits, else the largest square window (a power of two, 64 at least)
    whose sliding-window pass fits; UsageError when none fits."""
    need = cost.whole(h, w)
    if need is None or need <= limit:
        return need or 0, None
    side = 1 << max(int(math.log2(max(min(h, w), 64))), 6)
    while side >= 64:
        crop = (min(side, h), min(side, w))
        slide = cost.slide(h, w, crop)
        if slide is not None and slide <= limit:
            return slide, crop
        side //= 2
    smallest = cost.slide(h, w, (min(64, h), min(64, w))) or need
    raise UsageError(f"a {w}×{h} image needs about {format_bytes(smallest)} even with sliding "
                     f"windows, more than the {format_bytes(limit)} available: give a smaller "
                     "image, or raise --max-memory if more memory is free")


def export_need(model: torch.nn.Module, size: tuple[int, int], batch: int) -> int:
    """Bytes to export and check ``model`` at ``batch``×3×``size``: the traced pass is
    estimated as above (tracked on two small inputs), twice (PyTorch's reference output and
    the exported file's run are alive together during a check)."""
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    points = []
    for h, w in _SIZES:
        x = torch.zeros(batch, 3, h, w, device=device)
        points.append((h * w, tracked_peak(lambda x=x: model(x))))
    return 2 * estimate(fit(points), size[0] * size[1])


def available_bytes() -> int | None:
    """Memory this process can still use (see the module doc), or None where unknown."""
    free = None
    with contextlib.suppress(OSError, ValueError):
        found = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        if found:
            free = int(found.group(1)) * 1024
    if free is None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with contextlib.suppress(OSError, ValueError):
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            left = int(limit) - int((cgroup / "memory.current").read_text())
            free = left if free is None else min(free, left)
    return free


def parse_size(text: str) -> int:
    """Bytes of a size such as ``2G``, ``512M``, ``1.5GB``, ``800MiB`` or ``1000000``."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(text).lower())
    if not found:
        raise UsageError(f"not a memory size: {text!r} (e.g. 2G, 512M, 1.5GB)")
    value = float(found.group(1)) * _UNITS[found.group(2)]
    if value < 1:
        raise UsageError(f"memory size must be positive, got {text!r}")
    return int(value)


def format_bytes(n: int) -> str:
    """``n`` bytes as ``1.2 GB`` / ``350 MB`` (powers of 1024)."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20)):
        if n >= scale or unit == "MB":
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"  # pragma: no cover
