"""GAIN: the two official networks of Guided Attentive Interpolation (``ResCLANet``, ``DFCLANet``).

``gain_r18`` (``ResCLANet`` with ``CLAHead``): deep-stem ResNet-18 → 1×1 laterals to 128
(p2..p5) → global context on p5 → two GAIs that bring p4 and p5 *straight* onto the stride-8
grid of p3 → merge ``cat[p3, p4', p5']`` (1×1 + 3×3) → bilinear ×2 → ``cat`` with p2 → 1×1 +
dropout + classifier at stride 4 → bilinear to the input. The Cityscapes config also dilates
layer4's second 3×3 conv of each block by 2 (stride kept at 32); the CamVid config has no
dilation, no context and no 3×3 fuse (options ``dilate``, ``context``, ``fuse3x3``).

Sources: the seed abstract (GAI interpolates high-resolution features guided by low-resolution
semantic features; GAIN's headline numbers); the network itself is the official code
(simpleseg ``models/segmentors/clanet.py``); the abstract does not describe it.

``gain_df2`` (``DFCLANet`` with ``CLALightHead``): DFNetV2 (c3..c5, strides 8/16/32) → 1×1
laterals to 128 (p3..p5) → optional global context on p5 (off in the plain DF2 configs, on in
the ``gap`` ones) → the same two GAIs onto p3 → ``cat[p3, p4', p5']`` (384) → 1×1 → 128 → 3×3
→ dropout → classifier at stride 8 → bilinear ×8 to the input. It has no stride-4 level and no
separate merge: ``FUSE_3X3`` is ignored by the official head, and so it has no option here.

``gain_lite0``: the ``CLAHead`` of ``gain_r18`` on EfficientNet-Lite0 (rtseg's pairing for a
backbone that starts from ImageNet on these machines).

All: two auxiliary heads on p4' and p5' (3×3 conv with bias + BN + ReLU + dropout + 1×1; loss
weight 1.0 each, OHEM in the official configs). The official code uses ``align_corners=False``
throughout, as rtseg does. Deviations from the official code: the context is a switch between
``gap`` and none (the official head's PSP ``ppm`` option is not built); the auxiliary heads
are built only with ``aux=True`` (the official models always build them); the loss lives
outside the model.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import DFNetV2, ResNet, dfnetv2, efficientnet_lite0, resnet18_deep
from ..layers import ConvBNAct, SegHead, resize
from ..registry import register_model
from ..upsample import GAI
from .base import ModelOutput, SegmentationModel


class GlobalContext(nn.Module):
    """GAIN's ``GAP`` block: ``CBR3x3(CBR1x1(mean(x)) + x)``, B×C×h×w → B×C×h×w."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pooled = ConvBNAct(channels, channels, 1)
        self.fuse = ConvBNAct(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.pooled(x.mean((2, 3), keepdim=True)) + x)


class _CrossLayerNet(SegmentationModel):
    """What both GAIN heads share: laterals, context on p5, the two GAIs, the aux heads.

    Subclasses build their own output layers and then call :meth:`_build_aux`, so that the
    modules are created (and initialised) in the official order.
    """

    aux_weights = (1.0, 1.0)

    def __init__(self, backbone: nn.Module, channels: int, context: bool) -> None:
        super().__init__()
        c = channels
        self.backbone = backbone
        self.lateral = nn.ModuleList(ConvBNAct(ch, c, 1) for ch in backbone.out_channels)
        self.context = GlobalContext(c) if context else nn.Identity()
        self.gai4 = GAI(c, c, c)
        self.gai5 = GAI(c, c, c)

    def _build_aux(self, channels: int, num_classes: int, aux: bool) -> None:
        self.aux_heads = (
            nn.ModuleList(SegHead(channels, channels, num_classes, conv_bias=True)
                          for _ in range(2))
            if aux else None
        )
        if not aux:
            self.aux_weights = ()

    def levels(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """``x`` B×3×H×W → ``(fine, p4', p5')``.

        ``fine``: the laterals below p4, ending with p3 (``[p2, p3]`` or ``[p3]``), B×C each;
        ``p4' = GAI(p4, p3)`` and ``p5' = GAI(context(p5), p3)``, both B×C×H/8×W/8.
        """
        *fine, p4, p5 = (lat(f) for lat, f in zip(self.lateral, self.backbone(x), strict=True))
        p3 = fine[-1]
        return fine, self.gai4(p4, p3), self.gai5(self.context(p5), p3)

    def finish(self, x: torch.Tensor, logits: torch.Tensor, p4: torch.Tensor,
               p5: torch.Tensor):
        """The auxiliary logits on p4' and p5' in training, then :meth:`output`."""
        aux = None
        if self.training and self.aux_heads is not None:
            aux = [head(p) for head, p in zip(self.aux_heads, (p4, p5), strict=True)]
        return self.output(x, logits, aux)


class GAIN(_CrossLayerNet):
    """GAIN with the ``CLAHead``.

    Args:
        num_classes: K.
        backbone: a 4-level backbone (deep-stem ResNet-18 in the official code).
        channels: head width (128).
        context: add the global-context block on p5.
        fuse3x3: add the 3×3 conv to the merge.
        aux: build the two auxiliary heads.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: ResNet,
        channels: int = 128,
        context: bool = True,
        fuse3x3: bool = True,
        aux: bool = True,
    ) -> None:
        super().__init__(backbone, channels, context)
        c = channels
        merge: list[nn.Module] = [ConvBNAct(3 * c, c, 1)]
        if fuse3x3:
            merge.append(ConvBNAct(c, c, 3))
        self.merge = nn.Sequential(*merge)
        self.head = nn.Sequential(ConvBNAct(2 * c, c, 1), nn.Dropout2d(0.1),
                                  nn.Conv2d(c, num_classes, 1))
        self._build_aux(c, num_classes, aux)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        (p2, p3), p4, p5 = self.levels(x)
        f = resize(self.merge(torch.cat([p3, p4, p5], dim=1)), p2.shape[-2:])
        logits = self.head(torch.cat([f, p2], dim=1))
        return self.finish(x, logits, p4, p5)


class GAINDF2(_CrossLayerNet):
    """GAIN with the ``CLALightHead``: three levels, logits at stride 8.

    Args:
        num_classes: K.
        backbone: a 3-level backbone (DFNetV2 in the official code), strides 8/16/32.
        channels: head width (128).
        context: add the global-context block on p5.
        aux: build the two auxiliary heads.

    Forward: ``x`` B×3×H×W → B×K×H×W (eval) or ``(logits, [aux4, aux5])`` (training).
    """

    def __init__(
        self,
        num_classes: int,
        backbone: DFNetV2,
        channels: int = 128,
        context: bool = False,
        aux: bool = True,
    ) -> None:
        super().__init__(backbone, channels, context)
        c = channels
        self.head = nn.Sequential(ConvBNAct(3 * c, c, 1), ConvBNAct(c, c, 3), nn.Dropout2d(0.1),
                                  nn.Conv2d(c, num_classes, 1))
        self._build_aux(c, num_classes, aux)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        (p3,), p4, p5 = self.levels(x)
        logits = self.head(torch.cat([p3, p4, p5], dim=1))  # B×K×H/8×W/8
        return self.finish(x, logits, p4, p5)


@register_model("gain_r18")
def gain_r18(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
             channels: int = 128, context: bool = True, fuse3x3: bool = True,
             dilate: bool = True) -> GAIN:
    """GAIN, ResNet-18 (deep stem); defaults: the official Cityscapes config (``clanet_r18_gap_
    fuse3x3_dialted_cityscapes``): layer4 dilated by 2, global context, 3×3 fuse.

    Options: ``channels`` (head width), ``context`` (the global-context block), ``fuse3x3``
    (add the 3×3 conv to the merge), ``dilate`` (dilate layer4's second 3×3 conv of each block
    by 2, stride kept at 32: the official ``RESNET.DILATIONS=(1, 2)``). The official CamVid
    network (``clanet_r18_camvid_*``) is ``dilate=False, context=False, fuse3x3=False``.
    """
    backbone = resnet18_deep(pretrained_backbone,
                             dilations=((1, 1), (1, 1), (1, 1), (2, 2) if dilate else (1, 1)))
    return GAIN(num_classes, backbone, channels=channels, context=context, fuse3x3=fuse3x3,
                aux=aux)


@register_model("gain_lite0")
def gain_lite0(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
               channels: int = 128, context: bool = True, fuse3x3: bool = True) -> GAIN:
    """GAIN's ``CLAHead`` on EfficientNet-Lite0 (rtseg's pairing, not an official network).

    The head needs four levels at strides 4/8/16/32, which Lite0 has (24/40/112/1280
    channels), so it sits on Lite0 as on its ResNet-18; the stride-32 level is not dilated
    (as in the official CamVid config). ``pretrained_backbone="imagenet"`` starts Lite0 from
    ImageNet. Options as ``gain_r18``.
    """
    return GAIN(num_classes, efficientnet_lite0(pretrained_backbone), channels=channels,
                context=context, fuse3x3=fuse3x3, aux=aux)


@register_model("gain_df2")
def gain_df2(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
             channels: int = 128, context: bool = False) -> GAINDF2:
    """GAIN, DFNetV2 backbone with the light head (``DFCLANet``), logits at stride 8.

    Options: ``channels`` (head width), ``context`` (the global-context block on p5). The
    defaults are the official ``clanet_df2_{cityscapes,camvid}`` configs (no context);
    ``context=True`` is the ``clanet_df2_gap_*`` configs. ``pretrained_backbone``:
    ``df2_imagenet.pth``.
    """
    return GAINDF2(num_classes, dfnetv2(pretrained_backbone), channels=channels,
                     context=context, aux=aux)
