"""Cells on the cell-centre grid, shared by the upsamplers: which coarse cell holds each output
pixel's centre, and the resizes that use it.

An output axis of L cells over an input axis of l cells: output cell i has its centre at
``(i + 0.5)·l/L`` in input cells, inside input cell ``floor((i + 0.5)·l/L)`` (clamped), at an
offset of ``2·(pos − index − 0.5)`` from that cell's centre (±1 at its border). This is
``F.interpolate(mode="nearest-exact")``'s choice and, at L = s·l, CARAFE's official ``i // s``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..layers import tracing_or_exporting


def nearest_cells(
    out_len: int, in_len: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For an output axis of ``out_len`` cells over an input axis of ``in_len`` cells.

    Returns ``(index, delta)``, both of length ``out_len``: the input cell containing each
    output cell centre, and the centre's offset from that cell's centre (±1 = cell border).
    """
    pos = (torch.arange(out_len, device=like.device, dtype=like.dtype) + 0.5) * (in_len / out_len)
    index = pos.floor().clamp(0, in_len - 1)
    delta = 2 * (pos - index - 0.5)
    return index.long(), delta


def source_cells(
    out_size: tuple[int, int], in_size: tuple[int, int], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices (H,), (W,) of the coarse cell containing each output centre."""
    like = torch.empty(0, device=like.device)  # positions in float32 whatever like's dtype
    iy = nearest_cells(out_size[0], in_size[0], like)[0]
    ix = nearest_cells(out_size[1], in_size[1], like)[0]
    return iy, ix


def same_size(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> bool:
    """Whether ``x`` (…×h×w) already has ``size``, so that a resize may be skipped; never while
    tracing or exporting (the recorded graph must resize at other sizes)."""
    return tuple(x.shape[-2:]) == tuple(size) and not tracing_or_exporting()


def bilinear_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """:func:`rtseg.layers.resize` that stays in a traced graph when the sizes agree."""
    return x if same_size(x, size) else F.interpolate(x, size=size, mode="bilinear",
                                                      align_corners=False)


def nearest_up(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """B×C×h×w → B×C×H×W, each output pixel the value of its source cell (nearest-exact)."""
    if same_size(x, size):
        return x
    iy, ix = source_cells(tuple(size), tuple(x.shape[-2:]), x)
    return x.index_select(3, ix).index_select(2, iy)
