"""DDRNet-23-slim (Hong et al., "Deep Dual-resolution Networks", 2021), and the blocks PIDNet
shares with it.

Computation (c = 32 for the slim network; strides of the input; every BN is
``nn.BatchNorm2d``)::

    stem    conv3×3/2 (bias) BN ReLU conv3×3/2 (bias) BN ReLU                c,   s4
    layer1  2 basic blocks                                                    c,   s4  → c2
    layer2  2 basic blocks, the first /2                                      2c,  s8
    low:  layer3 (2 blocks /2, 4c, s16) → layer4 (2 blocks /2, 8c, s32) → layer5 (1 bottleneck
          /2, 16c, s64) → DAPPM → 4c, resized to s8
    high: layer3_ (2 blocks, 2c, s8) → layer4_ (2 blocks, 2c) → layer5_ (1 bottleneck, 4c)
    after stages 3 and 4, both branches exchange at once (values before the exchange):
          low  += down_i(ReLU(high))                   strided 3×3 conv(s) + BN
          high += resize(compression_i(ReLU(low)))     1×1 conv + BN, to the s8 grid
    head  final_layer(low + high): BN ReLU conv3×3 (64) BN ReLU conv1×1 (K, bias)  → s8
    aux   seghead_extra (the same head, 64 wide) on ``high`` after the stage-3 exchange

and the class map goes to the input size by :class:`LogitUpsampler` (``upsampler=``,
``bilinear`` as the official code), guided by ``c2`` = ReLU(layer1), 32 channels at stride 4.
Basic block: conv3×3 BN ReLU conv3×3 BN, + shortcut (1×1 conv + BN where the shape changes);
bottleneck: 1×1, 3×3 (stride), 1×1 ×2 expansion. The last block of a stage ends *without*
ReLU (and a bottleneck never ends with one): the caller applies ReLU where it reads the stage,
and the exchange adds the pre-activation sums. DAPPM (``spp``, branch width 128): BN-ReLU-1×1
conv branches on the input, on average pools 5/2, 9/4, 17/8 and the global mean; each pooled
branch is resized back, added to the previous branch and passed through BN-ReLU-conv3×3
(hierarchical); the five are concatenated, compressed by BN-ReLU-1×1 conv to 4c and added to a
BN-ReLU-1×1 conv shortcut.

Sources: everything above is the official code (ydhongHIT/DDRNet, MIT,
``segmentation/DDRNet_23_slim.py``, commit de0db31: ``DualResNet(BasicBlock, [2, 2, 2, 2],
planes=32, spp_planes=128, head_planes=64)``); its parameter count, 5,695,987 without and
5,734,342 with the auxiliary head (19 classes), is rtseg's exactly, and the module and
state_dict names are the official ones (the official module's state_dict loads strictly, and
both then compute the same outputs, train and eval).
The auxiliary loss weight 0.4: the DDRNet repository has no training code; the paper's deep
supervision uses 0.4, and in code PIDNet's DDRNet variant (XuJiacong/PIDNet
``models/others/ddrnet_23_adb_bag.py``, the same ``seghead_extra``) trains with BALANCE_WEIGHTS
[0.4, 1.0]. Published: 5.7 M parameters, 36.3 GFLOPs at 1024×2048 (paper); rtseg's
counter gives 36.28 GMAC, the same as on the official module.

Deviations:

* Resizes go to the size of the stride-8 tensor they are added to, not to ``input // 8`` as
  the official code computes it: the same at sizes divisible by 8, and any input size works
  (at 97×131 the official code fails on mismatched shapes).
* DAPPM's (and PAPPM's) global-mean branch is broadcast back to the map instead of resized
  bilinearly from 1×1: the same values, and an exported graph OpenCV DNN 5 runs correctly (it
  resizes 1×1 maps wrongly; the other pooled branches are 1×1 only below about 576 px).
* The official code builds its BNs as ``nn.SyncBatchNorm``; rtseg builds ``nn.BatchNorm2d`` and
  converts for multi-GPU runs (``sync_bn``), as for every model.
* The official ``get_seg_model`` builds no auxiliary head (``augment=False``); rtseg builds it
  with ``aux=True`` (as the paper trains) and ``aux=False`` gives the official inference network.
* ``upsampler=`` other than ``bilinear`` is rtseg's addition (the class map's final upsampling).
* No ImageNet weights: the official ImageNet file is a Google Drive link only (README), not at
  a stable URL, so ``pretrained_backbone`` must be None (rtseg's error says so).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from ..layers import kaiming_init, resize
from ..registry import register_model
from .base import ModelOutput, SegmentationModel
from .logit_upsampling import LogitUpsampler


class BasicBlock(nn.Module):
    """conv3×3 (stride) BN ReLU conv3×3 BN, + shortcut, then ReLU if ``relu_out``."""

    expansion = 1
    relu_by_default = True

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, relu_out: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.relu_out = relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out) if self.relu_out else out


class Bottleneck(nn.Module):
    """conv1×1 BN ReLU conv3×3 (stride) BN ReLU conv1×1 (×2 channels) BN, + shortcut."""

    expansion = 2
    relu_by_default = False

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, relu_out: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample
        self.relu_out = relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(out)))))
        out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out) if self.relu_out else out


Block = type[BasicBlock] | type[Bottleneck]


def conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) → BN; keys ``0``, ``1`` (the official ``nn.Sequential`` layout)."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(cout))


def bn_relu_conv(cin: int, cout: int, kernel: int = 1, pool: nn.Module | None = None,
                 groups: int = 1) -> nn.Sequential:
    """[pool →] BN → ReLU → conv (no bias): the pre-activation unit of DAPPM and PAPPM."""
    layers = [] if pool is None else [pool]
    layers += [nn.BatchNorm2d(cin), nn.ReLU(),
               nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False)]
    return nn.Sequential(*layers)


def _shortcut(block: Block, inplanes: int, planes: int, stride: int) -> nn.Module | None:
    if stride == 1 and inplanes == planes * block.expansion:
        return None
    return conv_bn(inplanes, planes * block.expansion, 1, stride)


def make_stage(block: Block, inplanes: int, planes: int, blocks: int,
               stride: int = 1) -> nn.Sequential:
    """``blocks`` blocks, the first strided with the shortcut conv; the first ends with the
    block's default activation, the middle ones with ReLU, the last one (of two or more)
    without (the official ``_make_layer``)."""
    first = block(inplanes, planes, stride, _shortcut(block, inplanes, planes, stride),
                  relu_out=block.relu_by_default)
    rest = [block(planes * block.expansion, planes, relu_out=i < blocks - 1)
            for i in range(1, blocks)]
    return nn.Sequential(first, *rest)


def single_block(block: Block, inplanes: int, planes: int) -> nn.Module:
    """One block without its final ReLU, not in a stage (PIDNet's ``_make_single_layer``)."""
    return block(inplanes, planes, 1, _shortcut(block, inplanes, planes, 1), relu_out=False)


def stem(planes: int) -> nn.Sequential:
    """Two 3×3 stride-2 convs (with bias, as the official code) with BN and ReLU: s4."""
    return nn.Sequential(nn.Conv2d(3, planes, 3, 2, 1), nn.BatchNorm2d(planes), nn.ReLU(),
                         nn.Conv2d(planes, planes, 3, 2, 1), nn.BatchNorm2d(planes), nn.ReLU())


class SegmentHead(nn.Module):
    """BN ReLU conv3×3 BN ReLU conv1×1 (bias): the official ``segmenthead`` (B×C×h×w → B×K×h×w)."""

    def __init__(self, inplanes: int, interplanes: int, outplanes: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, interplanes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(interplanes)
        self.conv2 = nn.Conv2d(interplanes, outplanes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))


def pool(kernel: int | None) -> nn.Module:
    """Average pool ``kernel``/``kernel // 2`` (padding ``kernel // 2``); None: global mean."""
    if kernel is None:
        return nn.AdaptiveAvgPool2d(1)
    return nn.AvgPool2d(kernel, kernel // 2, kernel // 2)


POOLS = (5, 9, 17, None)  # DAPPM's and PAPPM's four pooled branches


def pooled_to(t: torch.Tensor, size: torch.Size, index: int) -> torch.Tensor:
    """Pooled branch ``index`` (1-4) back to ``size``: bilinear, but the global mean (4, always
    1×1) is broadcast, which is the same values (OpenCV DNN 5 resizes a 1×1 map wrongly)."""
    return t.expand(-1, -1, size[0], size[1]) if index == 4 else resize(t, size)


class DAPPM(nn.Module):
    """Deep Aggregation Pyramid Pooling: B×C_in×h×w → B×C_out×h×w (see the module docstring)."""

    def __init__(self, inplanes: int, branch_planes: int, outplanes: int) -> None:
        super().__init__()
        for i, k in enumerate(POOLS, 1):
            setattr(self, f"scale{i}", bn_relu_conv(inplanes, branch_planes, pool=pool(k)))
        self.scale0 = bn_relu_conv(inplanes, branch_planes)
        for i in range(1, 5):
            setattr(self, f"process{i}", bn_relu_conv(branch_planes, branch_planes, 3))
        self.compression = bn_relu_conv(branch_planes * 5, outplanes)
        self.shortcut = bn_relu_conv(inplanes, outplanes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [self.scale0(x)]
        for i in range(1, 5):
            scaled = pooled_to(getattr(self, f"scale{i}")(x), size, i)
            outs.append(getattr(self, f"process{i}")(scaled + outs[-1]))
        return self.compression(torch.cat(outs, 1)) + self.shortcut(x)


def no_imagenet(model: str, pretrained: str | None, source: str) -> None:
    """Refuse ``pretrained_backbone``: the peers' ImageNet files have no stable URL."""
    if pretrained is None:
        return
    raise CheckpointError(
        f"pretrained_backbone={pretrained!r}: rtseg has no ImageNet weights for {model}: the "
        f"official ImageNet file is published only as a Google Drive link ({source} README), "
        f"not at a stable URL, and rtseg does not load it; use pretrained_backbone=None (or "
        f"start from another run's weights with init_from)")


class DDRNet(SegmentationModel):
    """DDRNet (two resolutions, bilateral exchange, DAPPM), logits at stride 8 → input size.

    Args:
        num_classes: K.
        planes: c (32: slim).
        spp_planes: DAPPM branch width.
        head_planes: width of the final and auxiliary heads.
        aux: build the auxiliary head (``seghead_extra``).
        upsampler: the final class-map upsampler (:mod:`rtseg.models.logit_upsampling`).
        upsampler_kwargs: its options.
    """

    aux_weights = (0.4,)

    def __init__(self, num_classes: int, planes: int = 32, spp_planes: int = 128,
                 head_planes: int = 64, aux: bool = True, upsampler: str = "bilinear",
                 upsampler_kwargs: dict | None = None) -> None:
        super().__init__()
        c, high = planes, planes * 2
        self.conv1 = stem(c)
        self.layer1 = make_stage(BasicBlock, c, c, 2)
        self.layer2 = make_stage(BasicBlock, c, 2 * c, 2, stride=2)
        self.layer3 = make_stage(BasicBlock, 2 * c, 4 * c, 2, stride=2)
        self.layer4 = make_stage(BasicBlock, 4 * c, 8 * c, 2, stride=2)
        self.compression3 = conv_bn(4 * c, high)
        self.compression4 = conv_bn(8 * c, high)
        self.down3 = conv_bn(high, 4 * c, 3, 2)
        self.down4 = nn.Sequential(*conv_bn(high, 4 * c, 3, 2), nn.ReLU(),
                                   *conv_bn(4 * c, 8 * c, 3, 2))
        self.layer3_ = make_stage(BasicBlock, 2 * c, high, 2)
        self.layer4_ = make_stage(BasicBlock, high, high, 2)
        self.layer5_ = make_stage(Bottleneck, high, high, 1)
        self.layer5 = make_stage(Bottleneck, 8 * c, 8 * c, 1, stride=2)
        self.spp = DAPPM(16 * c, spp_planes, 4 * c)
        self.seghead_extra = SegmentHead(high, head_planes, num_classes) if aux else None
        self.final_layer = SegmentHead(4 * c, head_planes, num_classes)
        kaiming_init(self)  # the official initialisation
        self.upsample = LogitUpsampler(upsampler, num_classes, c, **(upsampler_kwargs or {}))
        if not aux:
            self.aux_weights = ()

    def forward(self, x: torch.Tensor) -> ModelOutput:
        c2 = F.relu(self.layer1(self.conv1(x)))  # B×c×H/4×W/4: the upsampler's guide
        c3 = F.relu(self.layer2(c2))  # B×2c×H/8×W/8
        s8 = c3.shape[-2:]
        low, high = self.layer3(c3), self.layer3_(c3)
        low, high = (low + self.down3(F.relu(high)),
                     high + resize(self.compression3(F.relu(low)), s8))
        aux_in = high
        low, high = self.layer4(F.relu(low)), self.layer4_(F.relu(high))
        low, high = (low + self.down4(F.relu(high)),
                     high + resize(self.compression4(F.relu(low)), s8))
        high = self.layer5_(F.relu(high))  # B×4c×H/8×W/8
        low = resize(self.spp(self.layer5(F.relu(low))), s8)  # B×4c×H/8×W/8
        logits = self.upsample(self.final_layer(low + high), c2, x.shape[-2:])
        aux = None
        if self.training and self.seghead_extra is not None:
            aux = [self.seghead_extra(aux_in)]
        return self.output(x, logits, aux)


@register_model("ddrnet23_slim")
def ddrnet23_slim(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
                  upsampler: str = "bilinear", upsampler_kwargs: dict | None = None) -> DDRNet:
    """DDRNet-23-slim (the paper: 77.8 % Cityscapes val mIoU, 5.7 M parameters, 36.3 GFLOPs).

    Options: ``upsampler`` (the final class-map upsampling: ``bilinear``, the official, or
    ``gum``, ``dysample``, ``carafe``, ``sapa``; :mod:`rtseg.models.logit_upsampling`),
    ``upsampler_kwargs`` (its options). ``pretrained_backbone`` must be None (no ImageNet file
    at a stable URL).
    """
    no_imagenet("ddrnet23_slim", pretrained_backbone, "ydhongHIT/DDRNet")
    return DDRNet(num_classes, aux=aux, upsampler=upsampler, upsampler_kwargs=upsampler_kwargs)
