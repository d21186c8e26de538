"""The baseline: bilinear resize of the coarse feature, 1×1 projections, fuse."""

from __future__ import annotations

import torch
from torch import nn

from ..layers import ConvBNAct, fast_inference, pointwise, resize


class BilinearUpsample(nn.Module):
    """Bilinear upsampling with the same 1×1 projections GAI has, and no attention.

    This is GAI's official "BL" ablation: ``out = CBR1x1(cat[Conv1x1(S↑), S↑])`` with
    ``S↑ = bilinear(coarse → fine grid)``. It is exactly what :class:`~rtseg.upsample.gai.GAI`
    computes at initialisation (γ = 0), minus the query convs, so any gain of a learned
    upsampler over it is the upsampling itself, not extra projections.

    Args:
        coarse_channels: C_c of the coarse input.
        fine_channels: C_f of the guide (only its grid is used).
        channels: C of the output.

    Forward: ``coarse`` B×C_c×h×w, ``fine`` B×C_f×H×W → B×C×H×W.
    """

    def __init__(self, coarse_channels: int, fine_channels: int, channels: int) -> None:
        super().__init__()
        del fine_channels  # the baseline is not guided
        inner = max(channels // 2, 1)
        self.project = nn.Conv2d(coarse_channels, inner, 1)
        self.fuse = ConvBNAct(inner + coarse_channels, channels, 1)

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        up = resize(coarse, fine.shape[-2:])
        if fast_inference(self, up):  # the 1×1 layers as GEMMs, as in every upsampler
            rows = up.permute(0, 2, 3, 1)
            return pointwise([pointwise([rows], self.project), rows], self.fuse).permute(0, 3, 1, 2)
        return self.fuse(torch.cat([self.project(up), up], dim=1))
