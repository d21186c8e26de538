"""IFA networks: a ResNet, one 1×1 encoder per level, and the IFA decoder at stride 4.

``ifa_r50`` is the official network (deep-stem ResNet-50-C, multi-grid layer4 dilations 2/2/4 at
stride 32, zero-init residuals; encoders 1×1 conv with bias + BN + ReLU to 256; IFA MLP
1128 → 512 → 256 → 256 → K; logits at stride 4, bilinear to the input; one auxiliary head on
layer3 with weight 0.4). Sources: the seed abstract (features of every level taken at a query
coordinate with their relative coordinates, an MLP, any output resolution); the network is
the official code (``pyseg/models/fpn_ifa.py``, ``ifa.py``, ``model_helper.py``). Deviation: the
official final resize of the logits (and of the auxiliary logits) to the input uses
``align_corners=True``; rtseg's uses the cell-centre convention, which is also the one IFA's
own sampling follows. ``align_corners=True`` restores the official resize.

``ifa_r18`` is rtseg's real-time variant: torchvision-layout ResNet-18, encoders to 128 and an
MLP 616 → 256 → 128 → 128 → K.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..backbones import ResNet, resnet18, resnet50_deep
from ..layers import ConvBNAct, SegHead
from ..registry import register_model
from ..upsample import IFA
from .base import ModelOutput, SegmentationModel


class IFANet(SegmentationModel):
    """Backbone → per-level 1×1 encoders → IFA on the stride-4 grid.

    Args:
        num_classes: K.
        backbone: 4-level backbone.
        channels: encoder width per level.
        hidden: IFA MLP widths.
        aux: auxiliary head on the stride-16 level.
        aux_channels: width of that head.
        align_corners: resize the logits to the input with ``align_corners=True`` (official).
    """

    aux_weights = (0.4,)

    def __init__(
        self,
        num_classes: int,
        backbone: ResNet,
        channels: int = 256,
        hidden: Sequence[int] = (512, 256, 256),
        aux: bool = True,
        aux_channels: int = 256,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.backbone = backbone
        self.encoders = nn.ModuleList(
            ConvBNAct(c, channels, 1, bias=True) for c in backbone.out_channels
        )
        self.decoder = IFA([channels] * 4, num_classes, hidden)
        self.aux_head = (
            SegHead(backbone.out_channels[2], aux_channels, num_classes, conv_bias=True)
            if aux else None
        )
        if not aux:
            self.aux_weights = ()

    def forward(self, x: torch.Tensor) -> ModelOutput:
        feats = self.backbone(x)
        levels = [enc(f) for enc, f in zip(self.encoders, feats, strict=True)]
        logits = self.decoder(levels, tuple(levels[0].shape[-2:]))
        aux = None
        if self.training and self.aux_head is not None:
            aux = [self.aux_head(feats[2])]
        return self.output(x, logits, aux)


@register_model("ifa_r50")
def ifa_r50(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
            channels: int = 256, hidden: Sequence[int] = (512, 256, 256),
            align_corners: bool = False) -> IFANet:
    """IFA, ResNet-50-C (deep stem), the official Cityscapes network.

    Options: ``channels`` (encoder width per level), ``hidden`` (the MLP's widths),
    ``align_corners`` (the final resize to the input as the official code: ``True``; rtseg's
    default is the cell-centre convention).
    """
    backbone = resnet50_deep(
        pretrained_backbone, dilations=((1,) * 3, (1,) * 4, (1,) * 6, (2, 2, 4))
    )
    return IFANet(num_classes, backbone, channels=channels, hidden=hidden, aux=aux,
                  align_corners=align_corners)


@register_model("ifa_r18")
def ifa_r18(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
            channels: int = 128, hidden: Sequence[int] = (256, 128, 128),
            align_corners: bool = False) -> IFANet:
    """IFA on a torchvision ResNet-18: rtseg's real-time variant; options as ``ifa_r50``."""
    return IFANet(num_classes, resnet18(pretrained_backbone), channels=channels,
                  hidden=tuple(hidden), aux=aux, aux_channels=128, align_corners=align_corners)
