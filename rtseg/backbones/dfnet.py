"""DFNetV2 ("DF-2" of *Partial Order Pruning*, CVPR 2019): GAIN's second backbone.

The structure and key names are those of simpleseg's ``backbone/dfnet.py`` (GAIN's official
code; the same network as SFNet's and the DFNet authors' ``dfnetv2`` without the ImageNet
classifier)::

    stage1    3×3 conv s2 3→32 + BN + ReLU, 3×3 conv s2 32→64 + BN + ReLU      stride 4
    stage2_1  2 BasicBlocks @64, the first with stride 2                         stride 8
    stage2_2  1 BasicBlock 64→128 (1×1 conv + BN shortcut)               → c3  stride 8
    stage3_1  10 BasicBlocks @128, the first with stride 2                       stride 16
    stage3_2  1 BasicBlock 128→256                                       → c4  stride 16
    stage4_1  4 BasicBlocks @256, the first with stride 2                        stride 32
    stage4_2  2 BasicBlocks @512, the first 256→512                      → c5  stride 32

A block that changes the stride or the width gets the usual 1×1 conv (no bias) + BN
shortcut. 17.47 M parameters, as the spec's count. ``df2_imagenet.pth`` (not shipped) loads
strictly once its classifier ``fc.*`` is dropped.

Deviations from the official code: none in the network. Like the official class it sets no
initialisation of its own (PyTorch's defaults; the weights are meant to come from ImageNet).
The ``DFNET.STRIDE=64`` variant (stride 2 in stage4_2, used by no config) is not built, and
where the official loader uses ``strict=False``, rtseg raises on any mismatch.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .hub import resolve_pretrained
from .resnet import BasicBlock, load_state_dict_checked


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` BasicBlocks ``inplanes → planes``; the first one carries stride and shortcut."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                   nn.BatchNorm2d(planes))
    return nn.Sequential(BasicBlock(inplanes, planes, stride, downsample=downsample),
                         *(BasicBlock(planes, planes) for _ in range(blocks - 1)))


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DFNetV2(nn.Module):
    """DF-2 feature extractor.

    Forward: ``x`` B×3×H×W → ``[c3, c4, c5]``: 128, 256, 512 channels at strides 8, 16, 32
    (``out_channels``, ``out_strides``; sizes are ceil-divided, odd inputs are fine).
    """

    out_channels = (128, 256, 512)
    out_strides = (8, 16, 32)

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(*_conv_bn_relu(3, 32), *_conv_bn_relu(32, 64))
        self.stage2_1 = _stage(64, 64, 2, 2)
        self.stage2_2 = _stage(64, 128, 1, 1)
        self.stage3_1 = _stage(128, 128, 10, 2)
        self.stage3_2 = _stage(128, 256, 1, 1)
        self.stage4_1 = _stage(256, 256, 4, 2)
        self.stage4_2 = _stage(256, 512, 2, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage2_2(self.stage2_1(self.stage1(x)))
        c4 = self.stage3_2(self.stage3_1(c3))
        c5 = self.stage4_2(self.stage4_1(c4))
        return [c3, c4, c5]

    def load_pretrained(self, path: str | Path) -> None:
        """Load ImageNet weights (``df2_imagenet.pth``) from a local file, strictly.

        The classifier ``fc.*`` and a ``module.`` prefix are removed; any other missing or
        unexpected key or shape mismatch raises CheckpointError.
        """
        load_state_dict_checked(self, path, drop_prefixes=("fc.",))


def dfnetv2(pretrained: str | Path | None = None) -> DFNetV2:
    """DF-2 (GAIN's ``DFCLANet`` backbone): 128/256/512 channels at strides 8/16/32."""
    model = DFNetV2()
    if pretrained:
        model.load_pretrained(resolve_pretrained("dfnetv2", pretrained))
    return model
