"""BiSeNetV2 (Yu et al., IJCV 2021): a wide shallow detail branch, a narrow deep semantic branch
and a guided aggregation layer, with four booster (auxiliary) heads for training.

No official code was released. The network follows the MIT re-implementation
CoinCheung/BiSeNet (``lib/models/bisenetv2.py``, ``tools/train_amp.py``,
``configs/bisenetv2_city.py``; commit 6b4b67a), every fact below from there unless the paper
is named. The paper reports 73.4 % Cityscapes val mIoU (72.6 % test, 156 FPS, 2048×1024 input);
the re-implementation 74.95 % val::

    detail     S1: CBR3×3 s2 3→64, CBR 64           stride 2
               S2: CBR s2 64, CBR 64, CBR 64         stride 4  (64 ch: the guidance feature)
               S3: CBR s2 128, CBR 128, CBR 128      stride 8  → d (128 ch)
    semantic   stem: CBR s2 3→16; [CBR1×1 16→8, CBR s2 8→16] ‖ maxpool3 s2; CBR 32→16  s4
               S3: GE↓ 16→32, GE 32                  stride 8
               S4: GE↓ 32→64, GE 64                  stride 16
               S5: GE↓ 64→128, 3× GE 128             stride 32
               CE: x + CBR1×1(BN(mean_HW x)), CBR3×3 stride 32 → s (128 ch)
    BGA        a = (dw3×3+BN+1×1)(d) · σ(up4(BN(conv3×3 s))) ; b = AvgPool3s2(BN(conv3×3 s2 d))
               · σ((dw3×3+BN+1×1)(s)); out = CBR3×3(a + up4(b))    (up4: nearest; stride 8)
    head       CBR3×3 128→1024, dropout 0.1, conv1×1 → K (bias), bilinear to the input

GE (gather-and-expand) layer: CBR3×3 C→C, depthwise 3×3 C→6C (+BN+ReLU), 1×1 6C→C' + BN
(zero-initialised γ), plus the input, ReLU. GE↓ strides the depthwise conv (BN, no ReLU), adds
a second depthwise 3×3 6C→6C (+BN+ReLU) and takes a shortcut dw3×3 s2 + BN + 1×1 + BN. CBR =
conv (no bias) + BN + ReLU. The ReLUs after the depthwise convs, the BN+ReLU of the CE block's
last conv and of the BGA's output conv, and the head's 1024 middle channels are the
re-implementation's (its comments say the paper shows none of them, or no width).

Booster heads (training only; paper §3.4, widths from the re-implementation) on the semantic
branch's stem (stride 4, 16 ch), S3 (8, 32), S4 (16, 64) and S5 before CE (32, 128): CBR3×3 →
128, dropout 0.1, nearest ×2, CBR3×3 128 → f² (f = 4, 8, 16, 32: the head's stride), conv1×1 →
K, bilinear to the input. Loss weights 1, 1, 1, 1 (``loss_pre + sum(loss_aux)``, each an OHEM
cross-entropy with threshold 0.7).

The paper trains from scratch. The re-implementation instead starts ``detail``, ``segment`` and
``bga`` from ``backbone_v2.pth`` (a GitHub release file; its maintainer says it is ImageNet
trained and its training code is not public, issue #192; without it he recalls 71–74 % val,
issue #173). rtseg follows the paper: ``pretrained_backbone`` is rejected. The module names of
those three parts are the re-implementation's, so its tensors map one to one.

Deviations from the re-implementation:

* Resizes take explicit sizes, so any input size runs: the BGA's ×4 nearest upsamplings go to
  the detail map's size (they differ from ×4 when H or W is not a multiple of 32), the booster
  heads' ×2 to twice their input, and every class map goes to the input size in one bilinear
  resize (the same values when the sizes divide).
* The heads' parameter names are rtseg's (``conv``, ``up_conv``, ``cls``), not ``conv_out.N``.
* The booster heads run in training only and are not built with ``aux=False``; rtseg's counts
  (3,358,627 parameters for K = 19, equal to the re-implementation's ``aux_mode='eval'``
  network) are those of that inference graph.
* The re-implementation's optimiser (×10 learning rate and no weight decay for the heads' and
  all 1-D parameters) is the training recipe's business, not the model's.
* GFLOPs: the paper gives 21.15 at 512×1024; rtseg's counter finds 24.6 GMAC for this network
  at that size (98.4 at 1024×2048), the 1024-wide head alone 9.7; the paper does not give the
  head width.

The final resize is ``BiSeNetV2.upsample``, a
:class:`~rtseg.models.logit_upsampling.LogitUpsampler` (``upsampler=``: bilinear by default, as
the re-implementation; a learned upsampler is rtseg's addition); its guide is the detail
branch's stride-4 feature (64 channels, ``guide_channels``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CheckpointError
from ..layers import ConvBNAct
from ..registry import register_model
from .base import ModelOutput, SegmentationModel
from .logit_upsampling import LogitUpsampler


def _dw(channels: int, out_channels: int | None = None, stride: int = 1) -> nn.Conv2d:
    """Depthwise 3×3 (``out_channels`` a multiple of ``channels``: a depth multiplier)."""
    return nn.Conv2d(channels, out_channels or channels, 3, stride, 1, groups=channels,
                     bias=False)


class DetailBranch(nn.Module):
    """Forward: B×3×H×W → (B×64×H/4×W/4, B×128×H/8×W/8); sizes ceil-divided."""

    def __init__(self) -> None:
        super().__init__()
        self.S1 = nn.Sequential(ConvBNAct(3, 64, 3, 2), ConvBNAct(64, 64, 3))
        self.S2 = nn.Sequential(ConvBNAct(64, 64, 3, 2), ConvBNAct(64, 64, 3),
                                ConvBNAct(64, 64, 3))
        self.S3 = nn.Sequential(ConvBNAct(64, 128, 3, 2), ConvBNAct(128, 128, 3),
                                ConvBNAct(128, 128, 3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d4 = self.S2(self.S1(x))
        return d4, self.S3(d4)


class StemBlock(nn.Module):
    """B×3×H×W → B×16×H/4×W/4: a strided conv path beside a max-pool path, fused."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ConvBNAct(3, 16, 3, 2)
        self.left = nn.Sequential(ConvBNAct(16, 8, 1), ConvBNAct(8, 16, 3, 2))
        self.right = nn.MaxPool2d(3, 2, 1)
        self.fuse = ConvBNAct(32, 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], dim=1))


class GELayer(nn.Module):
    """Gather-and-expand layer, ``stride`` 1 (identity shortcut) or 2 (depthwise shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 6) -> None:
        super().__init__()
        mid = cin * expand
        self.stride = stride
        self.conv1 = ConvBNAct(cin, cin, 3)
        if stride == 1:
            self.dwconv = nn.Sequential(_dw(cin, mid), nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
        else:
            self.dwconv1 = nn.Sequential(_dw(cin, mid, 2), nn.BatchNorm2d(mid))
            self.dwconv2 = nn.Sequential(_dw(mid), nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
            self.shortcut = nn.Sequential(_dw(cin, stride=2), nn.BatchNorm2d(cin),
                                          nn.Conv2d(cin, cout, 1, bias=False),
                                          nn.BatchNorm2d(cout))
        self.conv2 = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x)
        if self.stride == 1:
            return self.relu(self.conv2(self.dwconv(y)) + x)
        return self.relu(self.conv2(self.dwconv2(self.dwconv1(y))) + self.shortcut(x))


class CEBlock(nn.Module):
    """Context embedding: x + CBR1×1(BN(global mean of x)), then CBR3×3 (128 channels)."""

    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv_gap = ConvBNAct(channels, channels, 1)
        self.conv_last = ConvBNAct(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_last(x + self.conv_gap(self.bn(x.mean((2, 3), keepdim=True))))


class SemanticBranch(nn.Module):
    """Forward: B×3×H×W → [stem (16 ch, stride 4), S3 (32, 8), S4 (64, 16), S5 (128, 32),
    CE output (128, 32)]."""

    def __init__(self) -> None:
        super().__init__()
        self.S1S2 = StemBlock()
        self.S3 = nn.Sequential(GELayer(16, 32, 2), GELayer(32, 32))
        self.S4 = nn.Sequential(GELayer(32, 64, 2), GELayer(64, 64))
        self.S5_4 = nn.Sequential(GELayer(64, 128, 2), *(GELayer(128, 128) for _ in range(3)))
        self.S5_5 = CEBlock(128)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f2 = self.S1S2(x)
        f3 = self.S3(f2)
        f4 = self.S4(f3)
        f5 = self.S5_4(f4)
        return [f2, f3, f4, f5, self.S5_5(f5)]


class BGALayer(nn.Module):
    """Bilateral guided aggregation: detail d (B×128×h×w, stride 8) and semantics s (B×128×
    h/4×w/4, stride 32) guide each other → B×128×h×w."""

    def __init__(self, c: int = 128) -> None:
        super().__init__()
        self.left1 = nn.Sequential(_dw(c), nn.BatchNorm2d(c), nn.Conv2d(c, c, 1, bias=False))
        self.left2 = nn.Sequential(nn.Conv2d(c, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c),
                                   nn.AvgPool2d(3, 2, 1))
        self.right1 = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.right2 = nn.Sequential(_dw(c), nn.BatchNorm2d(c), nn.Conv2d(c, c, 1, bias=False))
        self.conv = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU(inplace=True))

    def forward(self, d: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        size = d.shape[-2:]
        left = self.left1(d) * torch.sigmoid(_nearest(self.right1(s), size))
        left2 = self.left2(d)  # stride 32, the size of s (ceil division on both paths)
        right = left2 * torch.sigmoid(_nearest(self.right2(s), left2.shape[-2:]))
        return self.conv(left + _nearest(right, size))


def _nearest(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return nn.functional.interpolate(x, size=size, mode="nearest")


class SegmentHead(nn.Module):
    """CBR3×3 → ``mid``, dropout 0.1, [nearest ×2, CBR3×3 → ``up_channels``], conv1×1 → K.

    Forward: B×C×h×w → B×K×h×w (B×K×2h×2w with ``up_channels``); the resize to the input is the
    model's.
    """

    def __init__(self, cin: int, mid: int, num_classes: int, up_channels: int = 0) -> None:
        super().__init__()
        self.conv = ConvBNAct(cin, mid, 3)
        self.drop = nn.Dropout(0.1)
        self.up_conv = ConvBNAct(mid, up_channels, 3) if up_channels else None
        self.cls = nn.Conv2d(up_channels or mid, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.conv(x))
        if self.up_conv is not None:
            h, w = x.shape[-2:]
            x = self.up_conv(nn.functional.interpolate(x, size=(2 * h, 2 * w), mode="nearest"))
        return self.cls(x)


class BiSeNetV2(SegmentationModel):
    """Detail + semantic branches, guided aggregation, a stride-8 head.

    Args:
        num_classes: K.
        aux: build the four booster heads (training only).
        upsampler: the final class-map upsampling (:mod:`rtseg.models.logit_upsampling`;
            ``bilinear``, the re-implementation's, by default), guided by the detail branch's
            stride-4 feature.
        upsampler_kwargs: its options.

    Forward: B×3×H×W → B×K×H×W (eval); training: (logits, [4 booster logits]), all B×K×H×W.
    """

    aux_weights = (1.0, 1.0, 1.0, 1.0)
    aux_kinds = ("seg", "seg", "seg", "seg")
    guide_channels = 64  # the detail branch's stride-4 feature, ``upsample``'s guide
    guide_stride = 4

    def __init__(self, num_classes: int, aux: bool = True, upsampler: str = "bilinear",
                 upsampler_kwargs: dict | None = None) -> None:
        super().__init__()
        self.detail = DetailBranch()
        self.segment = SemanticBranch()
        self.bga = BGALayer(128)
        self.head = SegmentHead(128, 1024, num_classes)
        self.aux_heads = nn.ModuleList(
            SegmentHead(c, 128, num_classes, up_channels=f * f)
            for c, f in ((16, 4), (32, 8), (64, 16), (128, 32))) if aux else None
        if not aux:
            self.aux_weights, self.aux_kinds = (), ()
        self._init_weights()
        self.upsample = LogitUpsampler(upsampler, num_classes, self.guide_channels,
                                       **(upsampler_kwargs or {}))

    def _init_weights(self) -> None:
        # the re-implementation's: Kaiming (fan-out) convs with zero bias, BN γ = 1 and β = 0
        # but γ = 0 for each GE layer's last BN (the block starts as its shortcut)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, GELayer):
                nn.init.zeros_(m.conv2[1].weight)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        d4, d8 = self.detail(x)
        feats = self.segment(x)
        scores = self.head(self.bga(d8, feats[-1]))
        logits = self.upsample(scores, d4, tuple(x.shape[-2:]))
        aux = None
        if self.training and self.aux_heads is not None:
            aux = [h(f) for h, f in zip(self.aux_heads, feats[:4], strict=True)]
        return self.output(x, logits, aux)


@register_model("bisenetv2")
def bisenetv2(num_classes: int, pretrained_backbone: str | None = None,
              aux: bool = True, *, upsampler: str = "bilinear",
              upsampler_kwargs: dict | None = None) -> BiSeNetV2:
    """BiSeNetV2 (CoinCheung/BiSeNet re-implementation: 74.95 % Cityscapes val; paper 73.4 %).

    Options: ``upsampler`` (the final class-map upsampling: ``bilinear``, the
    re-implementation's, or a learned one of ``rtseg.models.LOGIT_UPSAMPLERS``, e.g. ``gum``,
    ``dysample``), ``upsampler_kwargs``. ``pretrained_backbone`` is rejected: the network has
    no separate backbone and the paper trains it from scratch.
    """
    if pretrained_backbone is not None:
        raise CheckpointError(
            f"bisenetv2 takes no pretrained_backbone (got {pretrained_backbone!r}): it has no "
            "separate backbone and its paper trains it from scratch. (The CoinCheung/BiSeNet "
            "re-implementation starts its detail, segment and bga parts from an ImageNet file, "
            "backbone_v2.pth, that rtseg does not load; their parameter names are the same "
            "here, so a converted rtseg checkpoint can be given to init_from.)")
    return BiSeNetV2(num_classes, aux=aux, upsampler=upsampler,
                     upsampler_kwargs=upsampler_kwargs)
