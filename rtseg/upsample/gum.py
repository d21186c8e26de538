"""GUM, the Guided Upsampling Module (GUN, Mazzini 2018).

A guidance module predicts a *guidance offset table*: two channels (dx, dy) per output pixel, in
units of coarse pixels. The output samples the coarse map bilinearly at the plain-upsampling
source position of each output pixel plus its offset::

    O(i, j) = bilinear(coarse, x_j + dx(i, j), y_i + dy(i, j)),
    x_j = (j + 0.5)·w/W − 0.5   (cell centres, as ``F.interpolate(align_corners=False)``)

Outside the map the border value is repeated. The last conv of the guidance module starts at
zero, so an untrained GUM is exactly bilinear upsampling and learns to move its samples.

Guidance variants (``guidance=``):
    * ``large_rf``: from the coarse input (large receptive field); the table is predicted on the
      coarse grid and bilinearly resized to the output grid.
    * ``high_res``: from the fine guide, on its grid.
    * ``fusion``: both, ``ReLU(BN(1×1(fine)) + up(BN(3×3(coarse))))``; the paper's best trade-off.

The unofficial reference (Kaggle-TGS) used the ``align_corners=True`` grid and normalised by
(W−1)/2; rtseg keeps the cell-centre convention of the whole library.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvBNAct, resize

GUIDANCE = ("large_rf", "high_res", "fusion")


def base_grid(
    out_size: tuple[int, int], in_size: tuple[int, int], like: torch.Tensor
) -> torch.Tensor:
    """Cell-centre sampling grid, 1×H×W×2 in ``grid_sample``'s normalised (x, y) order.

    Normalised coordinates do not depend on ``in_size`` under ``align_corners=False``; it is
    taken only to document the mapping.
    """
    del in_size
    h, w = out_size
    ys = (torch.arange(h, device=like.device, dtype=like.dtype) * 2 + 1) / h - 1
    xs = (torch.arange(w, device=like.device, dtype=like.dtype) * 2 + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1).unsqueeze(0)


def guided_sample(coarse: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Sample ``coarse`` (B×C×h×w) on the output grid of ``offsets`` (B×2×H×W, coarse pixels).

    Returns B×C×H×W. Zero offsets give ``F.interpolate(coarse, (H, W), mode="bilinear",
    align_corners=False)``.
    """
    h, w = coarse.shape[-2:]
    scale = torch.tensor([2.0 / w, 2.0 / h], device=offsets.device, dtype=offsets.dtype)
    grid = base_grid(tuple(offsets.shape[-2:]), (h, w), offsets)
    grid = grid + offsets.permute(0, 2, 3, 1) * scale
    return F.grid_sample(coarse, grid.to(coarse.dtype), mode="bilinear",
                         padding_mode="border", align_corners=False)


class GuidedUpsample(nn.Module):
    """Guided Upsampling Module.

    Args:
        coarse_channels: C of the map to upsample (features, or class scores in GUN).
        fine_channels: C_f of the high-resolution guide.
        channels: output channels; must equal ``coarse_channels`` (GUM moves samples, it does
            not project). ``None`` means ``coarse_channels``.
        guidance: "large_rf", "high_res" or "fusion".
        hidden: width of the guidance module.
        guide_channels: channels of the large-receptive-field guide when it is not the coarse
            map itself (GUN guides the upsampling of class scores with deep features).

    Forward: ``coarse`` B×C×h×w, ``fine`` B×C_f×H_f×W_f, optional ``size`` (H, W), by default
    the fine grid, optional ``coarse_guide`` (B×guide_channels×h'×w') → B×C×H×W. The offset
    table is predicted on the fine grid and resized to ``size`` when they differ (offsets are
    in coarse pixels, so resizing keeps their meaning).
    """

    def __init__(
        self,
        coarse_channels: int,
        fine_channels: int,
        channels: int | None = None,
        guidance: str = "fusion",
        hidden: int = 64,
        guide_channels: int | None = None,
    ) -> None:
        super().__init__()
        if guidance not in GUIDANCE:
            raise ValueError(f"guidance must be one of {GUIDANCE}, got {guidance!r}")
        if channels not in (None, coarse_channels):
            raise ValueError(
                f"GUM resamples its input: channels ({channels}) must equal coarse_channels "
                f"({coarse_channels})"
            )
        self.guidance = guidance
        if guidance in ("large_rf", "fusion"):
            self.from_coarse = ConvBNAct(guide_channels or coarse_channels, hidden, 3,
                                         act="relu" if guidance == "large_rf" else None)
        if guidance in ("high_res", "fusion"):
            k = 3 if guidance == "high_res" else 1
            self.from_fine = ConvBNAct(fine_channels, hidden, k,
                                       act="relu" if guidance == "high_res" else None)
        self.refine = ConvBNAct(hidden, hidden, 3)
        self.offset = nn.Conv2d(hidden, 2, 3, padding=1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def offsets(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """The guidance offset table on the fine grid: B×2×H_f×W_f, (dx, dy) in coarse pixels.

        ``coarse`` here is the large-receptive-field guide (the coarse map by default)."""
        size = fine.shape[-2:]
        if self.guidance == "large_rf":
            return resize(self.offset(self.refine(self.from_coarse(coarse))), size)
        if self.guidance == "high_res":
            g = self.from_fine(fine)
        else:
            g = F.relu(self.from_fine(fine) + resize(self.from_coarse(coarse), size))
        return self.offset(self.refine(g))

    def forward(
        self,
        coarse: torch.Tensor,
        fine: torch.Tensor,
        size: tuple[int, int] | None = None,
        coarse_guide: torch.Tensor | None = None,
    ) -> torch.Tensor:
        off = self.offsets(coarse if coarse_guide is None else coarse_guide, fine)
        if size is not None:
            off = resize(off, size)
        return guided_sample(coarse, off)
