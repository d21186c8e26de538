"""DySample, "Learning to Upsample by Learning to Sample" (Liu et al., ICCV 2023).

DySample predicts, for every output pixel and every channel group, a 2-D offset (in coarse
pixels) and samples the coarse map bilinearly there (``grid_sample``, border padding)::

    O_g(i, j) = bilinear(x_g, x_j + dx_g(i, j), y_i + dy_g(i, j)),
    x_j = (j + 0.5)·w/W − 0.5      (cell centres, ``align_corners=False``)

which is :func:`rtseg.upsample.gum.guided_sample` per group. The offsets come from the coarse
feature ``x`` (B×C×h×w) through one 1×1 convolution:

* style ``"lp"`` (linear, then pixel shuffle): ``o = Conv1×1(x)`` with 2·g·s² channels, laid out
  [x/y][group][s² sub-pixels], pixel-shuffled to B×2g×sh×sw;
* style ``"pl"`` (pixel shuffle, then linear): ``o = Conv1×1(pixel_shuffle(x, s))``, C/s² → 2g
  channels on the sh×sw grid;
* static scope (default): ``offset = 0.25·o``; dynamic scope (``dyscope=True``, "DySample+"):
  ``offset = 0.5·sigmoid(Conv1×1'(·))·o`` with a second, bias-free 1×1 convolution of the same
  input and shape, initialised to zero.

The official code adds a fixed "initial position" (±0.25 coarse pixels for s = 2) to coarse
cell centres; that is exactly the cell-centre position of each of the s×s output pixels, so the
sampling base here is the output grid's own cell centres, and zero offsets give
``F.interpolate(x, (H, W), mode="bilinear", align_corners=False)``. The offset convolution is
initialised as the official one (weights N(0, 0.001²), zero bias): an untrained DySample is
within ~1e-3 coarse pixels of bilinear upsampling.

In the pairwise slot: DySample has no guidance input (its paper names that as a feature). It
reads ``fine`` only for its size (H, W) and does not project: ``channels`` must equal
``coarse_channels``. Choices the paper leaves open: output sizes other than s·h × s·w (odd
inputs: 2h − 1 on ResNets, 2h + 1 on EfficientNet-Lite) get the offset field bilinearly resized
to H×W (offsets are in coarse pixels, so resizing keeps their meaning), as GUM does; the
sampling positions are computed in float32 at least.

Options: ``style`` ("lp" | "pl"), ``groups`` (4), ``dyscope`` (False), ``scale`` (2).

Source: paper arXiv:2308.15085; official code tiny-smart/dysample (MIT, one file, no custom
op). rtseg's code is its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .cells import bilinear_to
from .gum import guided_sample

STYLES = ("lp", "pl")


class DySample(nn.Module):
    """DySample upsampler.

    Args:
        coarse_channels: C of the map to upsample.
        fine_channels: ignored (no guidance).
        channels: output channels; must equal ``coarse_channels`` (``None``: the same).
        scale: nominal factor s.
        style: "lp" or "pl".
        groups: channel groups g with their own offsets (C and, for "pl", C/s² divisible by g).
        dyscope: learned ("dynamic") scope instead of the static 0.25.

    Forward: ``coarse`` B×C×h×w, ``fine`` B×C_f×H×W → B×C×H×W.
    """

    needs_grid_sample = True  # ONNX GridSample: opset >= 16 (rtseg.export checks)

    guided = False

    def __init__(
        self,
        coarse_channels: int,
        fine_channels: int,
        channels: int | None = None,
        scale: int = 2,
        style: str = "lp",
        groups: int = 4,
        dyscope: bool = False,
    ) -> None:
        super().__init__()
        del fine_channels
        if channels not in (None, coarse_channels):
            raise ValueError(f"DySample resamples its input: channels ({channels}) must equal "
                             f"coarse_channels ({coarse_channels})")
        if style not in STYLES:
            raise ConfigError(f"style must be one of {STYLES}, got {style!r}")
        c_in = coarse_channels // scale**2 if style == "pl" else coarse_channels
        if coarse_channels % groups or (style == "pl" and coarse_channels % scale**2):
            raise ValueError(f"coarse_channels ({coarse_channels}) must be divisible by groups "
                             f"({groups}) and, for style 'pl', by scale² ({scale**2})")
        c_out = 2 * groups * (1 if style == "pl" else scale**2)
        self.scale, self.style, self.groups = scale, style, groups
        self.offset = nn.Conv2d(c_in, c_out, 1)
        nn.init.normal_(self.offset.weight, 0.0, 0.001)
        nn.init.zeros_(self.offset.bias)
        self.scope = nn.Conv2d(c_in, c_out, 1, bias=False) if dyscope else None
        if self.scope is not None:
            nn.init.zeros_(self.scope.weight)

    def offsets(self, coarse: torch.Tensor) -> torch.Tensor:
        """Offsets B·g×2×sh×sw, (dx, dy) in coarse pixels, group-major along the batch."""
        s = self.scale
        src = F.pixel_shuffle(coarse, s) if self.style == "pl" else coarse
        off = self.offset(src)  # static scope 0.25, or 0.5·sigmoid(scope)
        scope = 0.25 if self.scope is None else 0.5 * torch.sigmoid(self.scope(src))
        off = off * scope
        if self.style == "lp":
            off = F.pixel_shuffle(off, s)  # [x/y][group][s²] → B×2g×sh×sw
        b, _, hh, ww = off.shape
        return off.reshape(b, 2, self.groups, hh, ww).transpose(1, 2).reshape(-1, 2, hh, ww)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        b, c, h, w = coarse.shape
        off = bilinear_to(self.offsets(coarse), fine.shape[-2:])
        out = guided_sample(coarse.reshape(b * self.groups, c // self.groups, h, w), off)
        return out.reshape(b, c, off.shape[-2], off.shape[-1])
