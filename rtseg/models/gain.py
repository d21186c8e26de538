"""GAIN: the official ResNet-18 network of Guided Attentive Interpolation (``ResCLANet``).

Deep-stem ResNet-18 → 1×1 laterals to 128 (p2..p5) → global context on p5 → two GAIs that bring
p4 and p5 *straight* onto the stride-8 grid of p3 → merge ``cat[p3, p4', p5']`` (1×1 + 3×3) →
bilinear ×2 → ``cat`` with p2 → 1×1 + dropout + classifier at stride 4 → bilinear to the input.
Two auxiliary heads on p4' and p5' (loss weight 1.0 each, OHEM in the paper's recipe). The
Cityscapes config also dilates layer4's 3×3 convs by 2 (stride kept at 32). The official code
uses ``align_corners=False`` throughout, as rtseg does.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import ResNet, resnet18_deep
from ..layers import ConvBNAct, SegHead, resize
from ..registry import register_model
from ..upsample import GAI
from .base import SegmentationModel


class GlobalContext(nn.Module):
    """GAIN's ``GAP`` block: ``CBR3x3(CBR1x1(mean(x)) + x)``, B×C×h×w → B×C×h×w."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pooled = ConvBNAct(channels, channels, 1)
        self.fuse = ConvBNAct(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.pooled(x.mean((2, 3), keepdim=True)) + x)


class GAIN(SegmentationModel):
    """GAIN with the ``CLAHead``.

    Args:
        num_classes: K.
        backbone: a 4-level backbone (deep-stem ResNet-18 in the paper).
        channels: head width (128).
        context: add the global-context block on p5.
        fuse3x3: add the 3×3 conv to the merge.
        aux: build the two auxiliary heads.
    """

    aux_weights = (1.0, 1.0)

    def __init__(
        self,
        num_classes: int,
        backbone: ResNet,
        channels: int = 128,
        context: bool = True,
        fuse3x3: bool = True,
        aux: bool = True,
    ) -> None:
        super().__init__()
        c = channels
        self.backbone = backbone
        self.lateral = nn.ModuleList(ConvBNAct(ch, c, 1) for ch in backbone.out_channels)
        self.context = GlobalContext(c) if context else nn.Identity()
        self.gai4 = GAI(c, c, c)
        self.gai5 = GAI(c, c, c)
        merge: list[nn.Module] = [ConvBNAct(3 * c, c, 1)]
        if fuse3x3:
            merge.append(ConvBNAct(c, c, 3))
        self.merge = nn.Sequential(*merge)
        self.head = nn.Sequential(ConvBNAct(2 * c, c, 1), nn.Dropout2d(0.1),
                                  nn.Conv2d(c, num_classes, 1))
        self.aux_heads = (
            nn.ModuleList(SegHead(c, c, num_classes, conv_bias=True) for _ in range(2))
            if aux else None
        )
        if not aux:
            self.aux_weights = ()

    def forward(self, x: torch.Tensor):
        p2, p3, p4, p5 = (lat(f) for lat, f in zip(self.lateral, self.backbone(x), strict=True))
        p4 = self.gai4(p4, p3)
        p5 = self.gai5(self.context(p5), p3)
        f = resize(self.merge(torch.cat([p3, p4, p5], dim=1)), p2.shape[-2:])
        logits = self.head(torch.cat([f, p2], dim=1))
        aux = None
        if self.training and self.aux_heads is not None:
            aux = [head(p) for head, p in zip(self.aux_heads, (p4, p5), strict=True)]
        return self.output(x, logits, aux)


@register_model("gain_r18")
def gain_r18(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
             channels: int = 128, context: bool = True, fuse3x3: bool = True) -> GAIN:
    """GAIN, ResNet-18 (deep stem, layer4 dilated by 2), Cityscapes config: gap + fuse3×3.

    Options: ``channels`` (head width), ``context`` (the global-context block), ``fuse3x3``
    (3×3 rather than 1×1 fuse); the defaults are the official Cityscapes configuration.
    """
    backbone = resnet18_deep(pretrained_backbone, dilations=((1, 1), (1, 1), (1, 1), (2, 2)))
    return GAIN(num_classes, backbone, channels=channels, context=context, fuse3x3=fuse3x3,
                aux=aux)
