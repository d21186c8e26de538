"""FANet: Real-time Semantic Segmentation with Fast Attention (official network).

ResNet-18/34 with the extra spatial reduction (levels c1..c4 at strides 8/16/32/64) and one
fast-attention module per level, fused top-down::

    level 32: Z = FA(c4);                P = Z             → up (C/2), smooth (128)
    level 16: Z = FA(c3);  P = Z + up↑    → up (C/2), smooth (128)
    level  8: Z = FA(c2);  P = Z + up↑    → up (C/2)
    level  4: Z = FA(c1);  P = Z + up↑    → smooth (128)
    out = CBR3x3(cat[smooth16↑, smooth4]) → 1×1 → K, at stride 8, bilinear to the input.

Two auxiliary heads on smooth32 and smooth16 (weight 0.5 each). Sources: the seed abstract
(fast attention without softmax, the extra spatial reduction); everything else is the official
code (``Train/ptsemseg/models/fanet``). Deviations from the official code, each with the switch
that undoes it (docs/fidelity.md gives the measured effect):

* the 1×1 ``up`` convs have no ``padding=1`` (the official declaration makes each up feature
  (h+2)×(w+2) with a constant border, about one pixel of misalignment after the resize);
  ``up_padding=True`` restores it;
* every resize (the top-down additions, the head's concatenation, the logits to the input)
  uses ``align_corners=False`` (official: True); ``align_corners=True`` restores it;
* fast attention divides by n (``mean=True``, rtseg's choice; see
  :mod:`rtseg.upsample.fast_attention`); ``mean=False`` is the official code;
* the two modules the official model builds but never runs (level-8 smooth, level-4 up: 0.15 M
  parameters) are not built (no switch: they do not change the output; ``rtseg convert`` names
  their keys as dropped).

With ``up_padding=True, align_corners=True, mean=False`` the network is the official one.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import ResNet, resnet18_fanet, resnet34_fanet
from ..layers import ConvBNAct, SegHead, resize
from ..registry import register_model
from ..upsample import FastAttention
from .base import ModelOutput, SegmentationModel


class FANetLevel(nn.Module):
    """One level of FANet's decoder: ``P = FA(feat) + up_in↑``, then the ``up``/``smooth`` convs.

    Forward: ``feat`` B×C×h×w, ``up_in`` B×C×h'×w' or None → (``up`` B×C/2×h×w or None,
    ``smooth`` B×128×h×w or None).
    """

    def __init__(self, channels: int, up: bool, smooth: bool, mean: bool = True,
                 up_padding: bool = False, align_corners: bool = False) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.attention = FastAttention(channels, mean=mean)
        self.up = (ConvBNAct(channels, channels // 2, 1, act="leaky", padding=int(up_padding))
                   if up else None)
        self.smooth = ConvBNAct(channels, 128, 3, act="leaky") if smooth else None

    def forward(self, feat: torch.Tensor, up_in: torch.Tensor | None,
                context: tuple[torch.Tensor, int] | None = None
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``context``: a summed K̂ᵀV (B×d×C) and its pixel count to attend to instead of the
        level's own (FANet +Temp: this frame's and the past frames')."""
        p = self.attention(feat) if context is None else self.attention.attend(feat, *context)
        if up_in is not None:
            p = p + resize(up_in, p.shape[-2:], self.align_corners)
        up = self.up(p) if self.up is not None else None
        smooth = self.smooth(p) if self.smooth is not None else None
        return up, smooth


class FANet(SegmentationModel):
    """FANet on a 4-level backbone whose levels have C, 2C, 4C, 8C channels (C = 64).

    ``mean``, ``up_padding``, ``align_corners``: see the module docstring (False, True, True is
    the official code).
    """

    aux_weights = (0.5, 0.5)

    def __init__(
        self, num_classes: int, backbone: ResNet, mean: bool = True, aux: bool = True,
        up_padding: bool = False, align_corners: bool = False,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = backbone.out_channels
        self.backbone = backbone
        self.align_corners = align_corners
        opts = {"mean": mean, "up_padding": up_padding, "align_corners": align_corners}
        self.level32 = FANetLevel(c4, up=True, smooth=True, **opts)
        self.level16 = FANetLevel(c3, up=True, smooth=True, **opts)
        self.level8 = FANetLevel(c2, up=True, smooth=False, **opts)
        self.level4 = FANetLevel(c1, up=False, smooth=True, **opts)
        self.head = nn.Sequential(ConvBNAct(256, 256, 3, act="leaky"),
                                  nn.Conv2d(256, num_classes, 1, bias=False))
        self.aux_heads = (
            nn.ModuleList(SegHead(128, 64, num_classes, act="leaky", dropout=0.0, cls_bias=False)
                          for _ in range(2))
            if aux else None
        )
        if not aux:
            self.aux_weights = ()

    def levels(self) -> list[FANetLevel]:
        """The decoder levels in the order of the backbone's outputs (strides 8 … 64)."""
        return [self.level4, self.level8, self.level16, self.level32]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        return self.decode(x, self.backbone(x))

    def decode(self, x: torch.Tensor, feats: list[torch.Tensor],
               contexts: list | None = None):
        """Logits (and aux logits in training) for input ``x`` from its backbone features
        ``[f4, f8, f16, f32]``; ``contexts`` gives each level's attention context (or None)."""
        f4, f8, f16, f32 = feats
        c4, c8, c16, c32 = contexts or (None,) * 4
        up32, sm32 = self.level32(f32, None, c32)
        up16, sm16 = self.level16(f16, up32, c16)
        up8, _ = self.level8(f8, up16, c8)
        _, sm4 = self.level4(f4, up8, c4)
        logits = self.head(torch.cat([resize(sm16, sm4.shape[-2:], self.align_corners), sm4],
                                     dim=1))
        aux = None
        if self.training and self.aux_heads is not None:
            aux = [head(s) for head, s in zip(self.aux_heads, (sm32, sm16), strict=True)]
        return self.output(x, logits, aux)


@register_model("fanet18")
def fanet18(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
            mean: bool = True, up_padding: bool = False, align_corners: bool = False) -> FANet:
    """FANet-18, the network of the seed abstract's "74.4 % mIoU at 72 FPS" (Cityscapes, Titan X).

    Options (defaults are rtseg's choices; the official code is ``mean=False, up_padding=True,
    align_corners=True``): ``mean`` divides the attention by n (the official code does not);
    ``up_padding`` gives the 1×1 ``up`` convs the official ``padding=1``; ``align_corners``
    makes every resize ``align_corners=True`` as the official code does.
    """
    return FANet(num_classes, resnet18_fanet(pretrained_backbone), mean=mean, aux=aux,
                 up_padding=up_padding, align_corners=align_corners)


@register_model("fanet34")
def fanet34(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
            mean: bool = True, up_padding: bool = False, align_corners: bool = False) -> FANet:
    """FANet-34, the network of the seed abstract's "75.5 % mIoU at 58 FPS"; options as fanet18
    (the official ``Train/`` code builds only ResNet-18; ``Testing/`` has ResNet-34)."""
    return FANet(num_classes, resnet34_fanet(pretrained_backbone), mean=mean, aux=aux,
                 up_padding=up_padding, align_corners=align_corners)
