"""PIDNet-S (Xu et al., "PIDNet: A Real-time Semantic Segmentation Network Inspired by PID
Controllers", CVPR 2023).

Three branches on DDRNet's blocks (:mod:`rtseg.models.ddrnet`; c = 32 for S; strides of the
input)::

    I (integral, context): stem, layer1 (2 basic blocks, c, s4) → c2, layer2 (2, 2c, s8),
        layer3 (3, 4c, s16), layer4 (3, 8c, s32), layer5 (2 bottlenecks, 16c, s64), PAPPM → 4c,
        resized to s8
    P (proportional, detail) at s8: layer3_ (2 blocks, 2c), layer4_ (2, 2c), layer5_
        (1 bottleneck, 4c); after stages 3 and 4 it takes context from I through
        Pag_i(p, compression_i(i)) (compression: 1×1 conv + BN to 2c)
    D (derivative, boundary) at s8: layer3_d (one basic block, c), layer4_d (one bottleneck,
        2c), layer5_d (one bottleneck, 4c); after stages 3 and 4 it adds
        resize(diff_i(i)) (3×3 conv + BN: 4c → c, 8c → 2c)
    fuse  Light-Bag(p, i, d): σ = sigmoid(d);  conv_p((1 − σ)·i + p) + conv_i(i + σ·p)
          (conv_*: 1×1 conv + BN, 4c → 4c)
    head  final_layer (BN ReLU conv3×3 128 BN ReLU conv1×1 K) → class map at s8

Pag(p, y) (pixel-attention-guided fusion): q = resize(f_y(y)), k = f_x(p) (1×1 conv + BN to c),
σ = sigmoid(Σ_channels k·q), out = (1 − σ)·p + σ·resize(y). PAPPM (branch width 96): as DAPPM,
but the four pooled branches are each added to the unpooled one and refined *in parallel* by one
grouped (4 groups) BN-ReLU-3×3 conv before the compression. ReLU sits between stages as in
DDRNet (the last block of a stage ends without it).

Training outputs: ``(logits, [p_logits, boundary])``; p_logits = seghead_p (BN ReLU conv3×3 128
BN ReLU conv1×1 K) on the P branch after its stage-3 fusion, loss weight 0.4 (``"seg"``);
boundary = seghead_d (same head, 32 wide, 1 channel) on the D branch after its stage-4
addition, B×1×H×W logits, weight 20 (``"boundary"``: a class-balanced binary cross-entropy
against the label boundaries plus the boundary-aware CE on the main logits where
sigmoid(boundary) > 0.8, weight 1; :class:`rtseg.losses.BoundaryLoss`). The final class map
goes to the input size by :class:`LogitUpsampler` (``upsampler=``, ``bilinear`` as the official
code), guided by ``c2`` = ReLU(layer1), 32 channels at stride 4.

Sources, all official code (XuJiacong/PIDNet, MIT, commit 4c158cf): the network
``models/pidnet.py`` (``PIDNet(m=2, n=3, planes=32, ppm_planes=96, head_planes=128)`` for
``pidnet_s``) and ``models/model_utils.py`` (blocks, PAPPM, PagFM, Light_Bag, segmenthead); loss
weights ``configs/cityscapes/pidnet_small_cityscapes.yaml`` (BALANCE_WEIGHTS [0.4, 1.0],
SB_WEIGHTS 1.0), ``utils/criterion.py`` (boundary loss ×20) and ``utils/utils.py`` (FullModel:
the 0.8 threshold). Parameters (19 classes): 7,625,715 without and 7,720,935 with the auxiliary
heads, rtseg's exactly; module and state_dict names are the official ones (the official
module's state_dict loads strictly, and both then compute the same outputs, train and eval).
Published (paper): 7.6 M parameters, 47.6 GFLOPs at 1024×2048; rtseg's counter gives 47.19
GMAC on this network and on the official module alike (the paper's counting tool is not named;
the elementwise products of Pag and Bag, which rtseg's counter does not see, add only about
0.02 G).

Deviations:

* Resizes go to the size of the stride-8 tensor they are added to, not to ``input // 8``: the
  same at sizes divisible by 8, and any input size works.
* PAPPM's global-mean branch is broadcast, not resized from 1×1 (the same values; see
  :mod:`rtseg.models.ddrnet`).
* The official forward applies in-place ReLUs to the P and D tensors it has kept for the
  auxiliary heads, so those heads read ReLU(p) and ReLU(d); rtseg computes the same values out
  of place.
* ``upsampler=`` other than ``bilinear`` is rtseg's addition.
* No ImageNet weights: the official ImageNet file is a Google Drive link only (README, which
  says the links no longer work), so ``pretrained_backbone`` must be None.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import kaiming_init, resize
from ..registry import register_model
from .base import ModelOutput, SegmentationModel
from .ddrnet import (
    POOLS,
    BasicBlock,
    Bottleneck,
    SegmentHead,
    bn_relu_conv,
    conv_bn,
    make_stage,
    no_imagenet,
    pool,
    pooled_to,
    single_block,
    stem,
)
from .logit_upsampling import LogitUpsampler


class PAPPM(nn.Module):
    """Parallel aggregation pyramid pooling: B×C_in×h×w → B×C_out×h×w."""

    def __init__(self, inplanes: int, branch_planes: int, outplanes: int) -> None:
        super().__init__()
        for i, k in enumerate(POOLS, 1):
            setattr(self, f"scale{i}", bn_relu_conv(inplanes, branch_planes, pool=pool(k)))
        self.scale0 = bn_relu_conv(inplanes, branch_planes)
        self.scale_process = bn_relu_conv(branch_planes * 4, branch_planes * 4, 3, groups=4)
        self.compression = bn_relu_conv(branch_planes * 5, outplanes)
        self.shortcut = bn_relu_conv(inplanes, outplanes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        base = self.scale0(x)
        pooled = [pooled_to(getattr(self, f"scale{i}")(x), size, i) + base for i in range(1, 5)]
        out = torch.cat([base, self.scale_process(torch.cat(pooled, 1))], 1)
        return self.compression(out) + self.shortcut(x)


class PagFM(nn.Module):
    """Pixel-attention-guided fusion: ``p`` B×C×H×W, context ``y`` B×C×h×w → B×C×H×W."""

    def __init__(self, channels: int, mid_channels: int) -> None:
        super().__init__()
        self.f_x = conv_bn(channels, mid_channels)
        self.f_y = conv_bn(channels, mid_channels)

    def forward(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        size = p.shape[-2:]
        q = resize(self.f_y(y), size)
        sim = torch.sigmoid((self.f_x(p) * q).sum(1, keepdim=True))
        return (1 - sim) * p + sim * resize(y, size)


class LightBag(nn.Module):
    """Boundary-attention-guided fusion (light): p, i, d B×C×H×W → B×C_out×H×W."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_p = conv_bn(channels, out_channels)
        self.conv_i = conv_bn(channels, out_channels)

    def forward(self, p: torch.Tensor, i: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        edge = torch.sigmoid(d)
        return self.conv_p((1 - edge) * i + p) + self.conv_i(i + edge * p)


class PIDNet(SegmentationModel):
    """PIDNet with the S/M layout (m = 2: Light-Bag, PAPPM, bottleneck D stage 4).

    Args:
        num_classes: K.
        planes: c (32: S, 64: M).
        ppm_planes: PAPPM branch width.
        head_planes: width of the final head and of the P auxiliary head.
        aux: build the auxiliary heads (P and boundary).
        upsampler: the final class-map upsampler (:mod:`rtseg.models.logit_upsampling`).
        upsampler_kwargs: its options.
    """

    aux_weights = (0.4, 20.0)
    aux_kinds = ("seg", "boundary")

    def __init__(self, num_classes: int, planes: int = 32, ppm_planes: int = 96,
                 head_planes: int = 128, aux: bool = True, upsampler: str = "bilinear",
                 upsampler_kwargs: dict | None = None) -> None:
        super().__init__()
        c = planes
        self.conv1 = stem(c)
        self.layer1 = make_stage(BasicBlock, c, c, 2)
        self.layer2 = make_stage(BasicBlock, c, 2 * c, 2, stride=2)
        self.layer3 = make_stage(BasicBlock, 2 * c, 4 * c, 3, stride=2)
        self.layer4 = make_stage(BasicBlock, 4 * c, 8 * c, 3, stride=2)
        self.layer5 = make_stage(Bottleneck, 8 * c, 8 * c, 2, stride=2)
        # P branch
        self.compression3 = conv_bn(4 * c, 2 * c)
        self.compression4 = conv_bn(8 * c, 2 * c)
        self.pag3 = PagFM(2 * c, c)
        self.pag4 = PagFM(2 * c, c)
        self.layer3_ = make_stage(BasicBlock, 2 * c, 2 * c, 2)
        self.layer4_ = make_stage(BasicBlock, 2 * c, 2 * c, 2)
        self.layer5_ = make_stage(Bottleneck, 2 * c, 2 * c, 1)
        # D branch
        self.layer3_d = single_block(BasicBlock, 2 * c, c)
        self.layer4_d = make_stage(Bottleneck, c, c, 1)
        self.diff3 = conv_bn(4 * c, c, 3)
        self.diff4 = conv_bn(8 * c, 2 * c, 3)
        self.spp = PAPPM(16 * c, ppm_planes, 4 * c)
        self.dfm = LightBag(4 * c, 4 * c)
        self.layer5_d = make_stage(Bottleneck, 2 * c, 2 * c, 1)
        if aux:
            self.seghead_p = SegmentHead(2 * c, head_planes, num_classes)
            self.seghead_d = SegmentHead(2 * c, c, 1)
        else:
            self.seghead_p = self.seghead_d = None
            self.aux_weights, self.aux_kinds = (), ()
        self.final_layer = SegmentHead(4 * c, head_planes, num_classes)
        kaiming_init(self)  # the official initialisation
        self.upsample = LogitUpsampler(upsampler, num_classes, c, **(upsampler_kwargs or {}))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        c2 = F.relu(self.layer1(self.conv1(x)))  # B×c×H/4×W/4: the upsampler's guide
        i = F.relu(self.layer2(c2))  # B×2c×H/8×W/8
        s8 = i.shape[-2:]
        p, d = self.layer3_(i), self.layer3_d(i)
        i = F.relu(self.layer3(i))
        p = self.pag3(p, self.compression3(i))
        d = d + resize(self.diff3(i), s8)
        p_aux = F.relu(p)
        i = F.relu(self.layer4(i))
        p, d = self.layer4_(p_aux), self.layer4_d(F.relu(d))
        p = self.pag4(p, self.compression4(i))
        d = d + resize(self.diff4(i), s8)
        d_aux = F.relu(d)
        p, d = self.layer5_(F.relu(p)), self.layer5_d(d_aux)  # B×4c×H/8×W/8 each
        i = resize(self.spp(self.layer5(i)), s8)
        logits = self.upsample(self.final_layer(self.dfm(p, i, d)), c2, x.shape[-2:])
        aux = None
        if self.training and self.seghead_p is not None:
            aux = [self.seghead_p(p_aux), self.seghead_d(d_aux)]
        return self.output(x, logits, aux)


@register_model("pidnet_s")
def pidnet_s(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
             upsampler: str = "bilinear", upsampler_kwargs: dict | None = None) -> PIDNet:
    """PIDNet-S (the paper: 78.8 % Cityscapes val mIoU, 7.6 M parameters, 47.6 GFLOPs).

    Options: ``upsampler`` (the final class-map upsampling: ``bilinear``, the official, or
    ``gum``, ``dysample``, ``carafe``, ``sapa``; :mod:`rtseg.models.logit_upsampling`),
    ``upsampler_kwargs`` (its options). ``pretrained_backbone`` must be None (no ImageNet file
    at a stable URL). Train it with the boundary loss: ``aux_kinds`` is ``("seg",
    "boundary")``, which :func:`rtseg.losses.build_loss` reads.
    """
    no_imagenet("pidnet_s", pretrained_backbone, "XuJiacong/PIDNet")
    return PIDNet(num_classes, aux=aux, upsampler=upsampler, upsampler_kwargs=upsampler_kwargs)
