"""Peak memory of one forward pass, beyond what is already resident.

CUDA: ``torch.cuda.max_memory_allocated`` over the call minus the memory allocated before it
(the caching allocator's tensors; cuDNN/cuBLAS workspaces outside it are not seen). CPU (Linux):
the rise of the process's peak resident set size over the call, after ``malloc_trim`` and a
reset of the peak through ``/proc/self/clear_refs``; approximate, and ``None`` where the reset
is not possible rather than a guess.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch


def _status_kb(field_name: str) -> int | None:
    with contextlib.suppress(OSError):
        m = re.search(rf"^{field_name}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        if m:
            return int(m.group(1))
    return None


def _malloc_trim() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).malloc_trim(0)


def peak_extra_bytes(run: Callable[[], Any], device: torch.device) -> int | None:
    """Largest extra memory during one ``run()`` (see the module docstring), or None."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        y = run()
        peak = torch.cuda.max_memory_allocated(device)
        del y
        return peak - before
    _malloc_trim()
    rss = _status_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS (Linux ≥ 4.0)
    except OSError:
        return None
    hwm = _status_kb("VmHWM")
    if rss is None or hwm is None or hwm > rss * 1.05 + 1024:  # the reset did not happen
        return None
    rss = min(rss, hwm)
    y = run()
    hwm = _status_kb("VmHWM")
    del y
    return None if hwm is None else max(hwm - rss, 0) * 1024


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes held by ``tensors`` (weights, buffers, inputs: what stays resident)."""
    return sum(t.numel() * t.element_size() for t in tensors)
