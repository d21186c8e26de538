"""STDC1-Seg (Fan et al., *Rethinking BiSeNet*, CVPR 2021): the STDC1 backbone, BiSeNet's
context path and fusion module, and a training-only detail head.

Why STDC1-Seg and not PP-LiteSeg-T (its peer on the same backbone): the official code is
PyTorch (MichaelFan01/STDC-Seg, MIT; ``nets/stdcnet.py``, ``models/model_stages.py``,
``loss/detail_loss.py``, ``train.py``; commit 59ff37f), so the parameter count is checked
against the official module itself, run here; PaddleSeg's PP-LiteSeg is Paddle code. Both
publish CamVid results. STDC1-Seg50 scores 72.2 % Cityscapes val (``evaluation.py``: images
at 0.5 scale, 512×1024), 71.9 % test at 250.4 FPS (paper). Every fact below is the official
code's unless the paper is named::

    backbone (STDC1, "STDCNet813")  features[0] ConvX3×3 s2 3→32           f2   stride 2
                                    features[1] ConvX3×3 s2 32→64          f4   stride 4
                                    features[2-3] STDC↓ 64→256, STDC 256   f8   stride 8
                                    features[4-5] STDC↓ 256→512, STDC 512  f16  stride 16
                                    features[6-7] STDC↓ 512→1024, STDC     f32  stride 32
    context path   g = CBR1×1(mean f32) (1024→128)
                   c16 = CBR3×3(up(ARM32(f32) + g)) at stride 16 (128 ch)
                   c8 = CBR3×3(up(ARM16(f16) + c16)) at stride 8 (128 ch)     (up: nearest)
    FFM            z = CBR1×1([f8, c8]) 384→256; z + z·σ(1×1(ReLU(1×1(mean z)))) (256→64→256)
    head           CBR3×3 256→256, conv1×1 → K (no bias), bilinear to the input

ConvX = conv + BN + ReLU. An STDC module (4 blocks, "cat") runs ConvX1×1 C→C'/2, then ConvX3×3
to C'/4, C'/8, C'/8 in sequence and concatenates the four outputs (C' channels); the strided
one (↓) puts a depthwise 3×3 s2 + BN after the first block and average-pools (3, s2) that
block's output for the concatenation. ARM: CBR3×3 C→128, times σ(BN(1×1(global mean))).

Training outputs (weights as ``train.py``: ``lossp + loss2 + loss3 + bce + dice``, all 1):
two seg heads, CBR3×3 128→64 + conv1×1 → K, on c8 and on c16 (OHEM cross-entropy 0.7 like
the main output), and the *detail* head CBR3×3 256→64 + conv1×1 → 1 on f8 (``use_boundary_8``,
the only one the STDC1-Seg scripts switch on), a ``"detail"`` output whose loss is
:class:`rtseg.losses.DetailLoss` (BCE + Dice against Laplacian detail targets of the labels).

ImageNet weights: the official STDC1 file (``STDCNet813M_73.91.tar``) is published only on
Google Drive and BaiduYun (the repository's README), which rtseg's download cannot fetch:
``pretrained_backbone="imagenet"`` raises that error; a local path to the file loads it (its
classifier keys are dropped; any other mismatch raises). The official STDC1-Seg training starts
from it.

Deviations from the official code:

* The official network always builds (and runs, in every mode) the backbone's ImageNet
  classifier (``conv_last``, ``fc``, ``bn``, ``linear``: 3,125,248 parameters) and four detail
  heads (strides 2, 4, 8, 16) of which STDC1-Seg trains one; rtseg builds none of the unused
  ones. The eval graph here (8,275,104 parameters for K = 19) equals the official inference
  computation; with ``aux=True`` rtseg adds the two seg heads and the stride-8 detail head.
* Every resize takes an explicit size; the context path's nearest upsamplings already did.
* Bilinear resizes use rtseg's ``align_corners=False``; ``align_corners=True`` (the official
  code's, for the logits and the detail logits) is an option.
* None in the initialisation (backbone: Kaiming fan-out convs, BN γ = 1, β = 0; everything
  else: Kaiming with a = 1), which the official code applies when no ImageNet file is given.

The final resize is ``STDCSeg.upsample``, a :class:`~rtseg.models.logit_upsampling.LogitUpsampler`
(``upsampler=``: bilinear by default, as the official code; a learned upsampler is rtseg's
addition); its guide is the backbone's stride-4 feature f4 (64 channels, ``guide_channels``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..backbones import load_state_dict_checked
from ..errors import CheckpointError
from ..layers import ConvBNAct
from ..registry import register_model
from .base import ModelOutput, SegmentationModel
from .logit_upsampling import LogitUpsampler

# The keys of the official STDCNet813 file that this backbone does not have: the ImageNet
# classifier and the ``x2``…``x32`` aliases of ``features`` slices (the same tensors again).
_NOT_OURS = ("conv_last.", "fc.", "bn.", "linear.", "x2.", "x4.", "x8.", "x16.", "x32.")


class STDCModule(nn.Module):
    """Short-term dense concatenation ("cat" type, 4 blocks). B×C×H×W → B×C'×H/s×W/s."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        widths = [cout // 2, cout // 4, cout // 8, cout // 8]
        self.conv_list = nn.ModuleList(
            ConvBNAct(c_in, c, 1 if i == 0 else 3)
            for i, (c_in, c) in enumerate(zip([cin] + widths[:-1], widths, strict=True)))
        if stride == 2:
            half = cout // 2
            self.avd_layer = nn.Sequential(
                nn.Conv2d(half, half, 3, 2, 1, groups=half, bias=False), nn.BatchNorm2d(half))
            self.skip = nn.AvgPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.conv_list[0](x)
        out = self.avd_layer(first) if self.stride == 2 else first
        outs = [self.skip(first) if self.stride == 2 else first]
        for conv in self.conv_list[1:]:
            out = conv(out)
            outs.append(out)
        return torch.cat(outs, dim=1)


class STDC1(nn.Module):
    """STDC1 ("STDCNet813") without its ImageNet classifier.

    Forward: B×3×H×W → [f2, f4, f8, f16, f32]: 32, 64, 256, 512, 1024 channels at strides
    2…32 (``out_channels``, ``out_strides``; sizes ceil-divided, odd inputs are fine).
    """

    out_channels = (32, 64, 256, 512, 1024)
    out_strides = (2, 4, 8, 16, 32)
    _levels = ((0, 1), (1, 2), (2, 4), (4, 6), (6, 8))  # features[a:b] per output level

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            ConvBNAct(3, 32, 3, 2), ConvBNAct(32, 64, 3, 2),
            STDCModule(64, 256, 2), STDCModule(256, 256),
            STDCModule(256, 512, 2), STDCModule(512, 512),
            STDCModule(512, 1024, 2), STDCModule(1024, 1024))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for a, b in self._levels:
            for i in range(a, b):
                x = self.features[i](x)
            outs.append(x)
        return outs

    def load_pretrained(self, path: str | Path) -> None:
        """Load the official ImageNet file (``STDCNet813M_73.91.tar``) from a local path;
        the classifier keys are dropped, any other mismatch raises CheckpointError."""
        load_state_dict_checked(self, path, drop_prefixes=_NOT_OURS)


class ARM(nn.Module):
    """Attention refinement: CBR3×3 C→C', times σ(BN(1×1(global mean)))."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBNAct(cin, cout, 3)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        atten = self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True)))
        return feat * torch.sigmoid(atten)


class FFM(nn.Module):
    """Feature fusion: z = CBR1×1([a, b]); z + z·σ(1×1(ReLU(1×1(mean z))))."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = ConvBNAct(cin, cout, 1)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        z = self.convblk(torch.cat([a, b], dim=1))
        atten = torch.sigmoid(self.conv2(self.relu(self.conv1(z.mean((2, 3), keepdim=True)))))
        return z + z * atten


class OutputHead(nn.Sequential):
    """CBR3×3 C→mid, conv1×1 mid→K (no bias): BiSeNet's output head."""

    def __init__(self, cin: int, mid: int, num_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNAct(cin, mid, 3)
        self.conv_out = nn.Conv2d(mid, num_classes, 1, bias=False)


def _nearest(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return nn.functional.interpolate(x, size=size, mode="nearest")


class STDCSeg(SegmentationModel):
    """STDC backbone + context path + FFM; seg and detail heads for training.

    Args:
        num_classes: K.
        backbone: :class:`STDC1`.
        aux: build the two seg heads and the detail head (training only).
        align_corners: bilinear resizes of the class maps as the official code
            (``align_corners=True``).
        upsampler: the final class-map upsampling (:mod:`rtseg.models.logit_upsampling`;
            ``bilinear``, the official, by default), guided by the backbone's stride-4 feature.
        upsampler_kwargs: its options.

    Forward: B×3×H×W → B×K×H×W (eval); training: (logits, [seg16, seg32, detail]), the seg
    outputs B×K×H×W, the detail output B×1×H×W (logits of "is detail").
    """

    aux_weights = (1.0, 1.0, 1.0)
    aux_kinds = ("seg", "seg", "detail")
    guide_channels = 64  # the backbone's stride-4 feature, ``upsample``'s guide
    guide_stride = 4

    def __init__(self, num_classes: int, backbone: STDC1, aux: bool = True,
                 align_corners: bool = False, upsampler: str = "bilinear",
                 upsampler_kwargs: dict | None = None) -> None:
        super().__init__()
        _, _, c8, c16, c32 = backbone.out_channels
        self.align_corners = align_corners
        self.backbone = backbone
        self.conv_avg = ConvBNAct(c32, 128, 1)
        self.arm32 = ARM(c32, 128)
        self.arm16 = ARM(c16, 128)
        self.conv_head32 = ConvBNAct(128, 128, 3)
        self.conv_head16 = ConvBNAct(128, 128, 3)
        self.ffm = FFM(c8 + 128, 256)
        self.conv_out = OutputHead(256, 256, num_classes)
        if aux:
            self.conv_out16 = OutputHead(128, 64, num_classes)
            self.conv_out32 = OutputHead(128, 64, num_classes)
            self.conv_out_sp8 = OutputHead(c8, 64, 1)
        else:
            self.aux_weights, self.aux_kinds = (), ()
        self.aux = aux
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d) and not name.startswith("backbone."):
                nn.init.kaiming_normal_(m.weight, a=1)
        self.upsample = LogitUpsampler(upsampler, num_classes, self.guide_channels,
                                       align_corners, **(upsampler_kwargs or {}))

    def context(self, f8: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context path: (c8 B×128×H/8×W/8, c16 B×128×H/16×W/16)."""
        g = self.conv_avg(f32.mean((2, 3), keepdim=True))
        c16 = self.conv_head32(_nearest(self.arm32(f32) + g, f16.shape[-2:]))
        c8 = self.conv_head16(_nearest(self.arm16(f16) + c16, f8.shape[-2:]))
        return c8, c16

    def forward(self, x: torch.Tensor) -> ModelOutput:
        _, f4, f8, f16, f32 = self.backbone(x)
        c8, c16 = self.context(f8, f16, f32)
        scores = self.conv_out(self.ffm(f8, c8))
        logits = self.upsample(scores, f4, tuple(x.shape[-2:]))
        aux = None
        if self.training and self.aux:
            aux = [self.conv_out16(c8), self.conv_out32(c16), self.conv_out_sp8(f8)]
        return self.output(x, logits, aux)


@register_model("stdc1_seg")
def stdc1_seg(num_classes: int, pretrained_backbone: str | None = None, aux: bool = True, *,
              align_corners: bool = False, upsampler: str = "bilinear",
              upsampler_kwargs: dict | None = None) -> STDCSeg:
    """STDC1-Seg (72.2 % Cityscapes val as STDC1-Seg50: images at 0.5 scale, 512×1024).

    Options: ``align_corners`` (the official code's ``True`` for the logits' resizes; rtseg's
    default ``False``), ``upsampler`` (the final class-map upsampling: ``bilinear``, the
    official, or a learned one of ``rtseg.models.LOGIT_UPSAMPLERS``), ``upsampler_kwargs``.
    ``pretrained_backbone``: a local path to the official STDC1 ImageNet file; ``"imagenet"``
    raises (the file is only on Google Drive and BaiduYun).
    """
    backbone = STDC1()
    if str(pretrained_backbone) == "imagenet":
        raise CheckpointError(
            "pretrained_backbone='imagenet': the STDC1 ImageNet file (STDCNet813M_73.91.tar) is "
            "published only on Google Drive and BaiduYun (MichaelFan01/STDC-Seg README), which "
            "rtseg cannot download; fetch it yourself and give its local path instead")
    if pretrained_backbone:
        backbone.load_pretrained(pretrained_backbone)
    return STDCSeg(num_classes, backbone, aux=aux, align_corners=align_corners,
                   upsampler=upsampler, upsampler_kwargs=upsampler_kwargs)
