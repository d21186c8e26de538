"""Small layers shared by every model: conv + BN + activation, and the one resize rtseg uses.

Coordinate convention (all of rtseg): a pixel is a cell and its value sits at the cell centre.
Resizing maps cell centres onto cell centres, i.e. ``align_corners=False``. Where an official
network used ``align_corners=True`` its model docstring says so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of a …×C×h×w tensor (B×C×h×w, or B×T×C×h×w clips) to …×C×size,
    cell-centre convention."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.dim() > 4:
        return resize(x.flatten(0, x.dim() - 4), size).unflatten(0, x.shape[:-3])
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def make_act(act: str | None) -> nn.Module:
    """'relu', 'leaky' (slope 0.01, as FANet's ABN emulation) or None."""
    if act is None:
        return nn.Identity()
    if act == "relu":
        return nn.ReLU(inplace=True)
    if act == "leaky":
        return nn.LeakyReLU(0.01, inplace=True)
    raise ValueError(f"unknown activation {act!r}; use 'relu', 'leaky' or None")


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias by default) → BatchNorm2d → activation. Keys: ``conv``, ``bn``, ``act``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        act: str | None = "relu",
        bias: bool = False,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = make_act(act)


class SegHead(nn.Sequential):
    """Conv3x3 + BN + act (+ dropout) → Conv1x1 to ``num_classes``: auxiliary/output heads."""

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        num_classes: int,
        act: str = "relu",
        dropout: float = 0.1,
        conv_bias: bool = False,
        cls_bias: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=conv_bias)
        self.bn = nn.BatchNorm2d(mid_channels)
        self.act = make_act(act)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.cls = nn.Conv2d(mid_channels, num_classes, 1, bias=cls_bias)
