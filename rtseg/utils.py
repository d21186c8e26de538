"""Small helpers shared by the library, the tools and the CLI: one place for each.

* constants: the ignore label, the normalisation statistics, image and video file suffixes;
* :func:`resolve_device`: ``"auto"`` → CUDA when available, else CPU, with a checked name;
* :func:`autocast`: the one mixed-precision context (``"amp"`` = fp16 on CUDA, bf16 on CPU);
* :func:`format_table`: the one plain-text / Markdown table printer;
* :func:`percent`: the one way a fraction (mIoU, accuracy) is printed: ``57.33 %``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from .errors import UsageError

IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Suffixes that Pillow reads without plugins, lower case; the data sets and ``predict`` share them.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        UsageError: an unknown name, or CUDA asked for where it is not available.
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"device {name!r} is not supported; use auto, cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} requested but CUDA is not available "
                         f"(torch {torch.__version__}); use cpu")
    return device


def autocast(device: torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """Mixed-precision context for ``precision`` in fp32 (none), fp16, bf16 or amp.

    ``"amp"`` is the training default: fp16 on CUDA (with a GradScaler), bf16 elsewhere (CPUs
    with AVX-512 BF16 or AMX run it natively; fp16 autocast on CPU is slow).
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "amp":
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    elif precision in PRECISIONS:
        dtype = PRECISIONS[precision]
    else:
        raise UsageError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)} or amp")
    return torch.autocast(device.type, dtype=dtype)


def format_table(head: Sequence[str], rows: Sequence[Sequence[object]],
                 markdown: bool = False) -> str:
    """Rows under a header: aligned plain text (first column left), or a Markdown table."""
    cells = [[str(x) for x in head]] + [[str(x) for x in r] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in head) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells[1:]])
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    return "\n".join("  ".join(x.ljust(w) if i == 0 else x.rjust(w)
                               for i, (x, w) in enumerate(zip(r, widths, strict=True)))
                     for r in cells)


def percent(fraction: float) -> str:
    """A fraction in [0, 1] as per cent with two decimals: ``0.5733`` → ``"57.33 %"``."""
    return f"{100 * fraction:.2f} %"
