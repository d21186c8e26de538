"""ResNet-18/34/50 in torchvision's layout and key names, plus the deep-stem and FANet variants.

* ``resnet18/34/50``: torchvision's layout (7×7 stem, strides 4/8/16/32). A torchvision ImageNet
  ``.pth`` loads into it with ``strict=True`` (its classifier ``fc.*`` is dropped first).
* ``resnet18_deep``, ``resnet50_deep``: the "deep stem" of GAIN and IFA (three 3×3 convs 64, 64,
  128, then BN, ReLU, max-pool), with the key names of the SFNet/simpleseg files
  (``conv1.0/1/3/4/6``, ``bn1``), so ``resnet18-deep-inplane128.pth`` loads as it is.
* ``resnet18_fanet``, ``resnet34_fanet``: FANet's extra spatial reduction: every stage has
  stride 2, so the levels sit at strides 8/16/32/64; layer1 gets a new 1×1 downsample conv that
  no ImageNet file has (the only keys allowed to be missing), and the blocks use LeakyReLU after
  their first BN as FANet's code does.

Every backbone returns the list ``[c2, c3, c4, c5]`` and declares ``out_channels`` and
``out_strides``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..layers import kaiming_init, make_act
from .hub import resolve_pretrained


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        act1: str = "relu",
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = make_act(act1)
        self.conv2 = _conv3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3×3 conv."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        act1: str = "relu",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.act1 = make_act(act1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act1(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet feature extractor.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)``.
        deep_stem: three 3×3 convs (64, 64, 128) instead of one 7×7 conv (64).
        strides: stride of each of the four stages (FANet uses 2 for layer1 too).
        dilations: per stage, the dilation of each block's 3×3 conv (``conv2``); the stride is
            unchanged, as in simpleseg's ``DILATIONS`` and IFA's multi-grid.
        act1: activation after a block's first BN ("leaky" in FANet).
        maxpool_ceil: ``ceil_mode`` of the stem max-pool (True in IFA's ResNet-50-C).
        zero_init_residual: zero the last BN of each block (IFA does).
        new_keys: state_dict keys that no ImageNet file can have (a new downsample conv);
            :meth:`load_pretrained` keeps their fresh initialisation.

    Forward: ``x`` B×3×H×W → ``[c2, c3, c4, c5]``, with ``out_channels[i]`` channels at stride
    ``out_strides[i]`` (sizes are ceil-divided: odd inputs are fine).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        deep_stem: bool = False,
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[Sequence[int]] | None = None,
        act1: str = "relu",
        maxpool_ceil: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.deep_stem = deep_stem
        if deep_stem:
            self.conv1 = nn.Sequential(
                _conv3x3(3, 64, stride=2),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                _conv3x3(64, 64),
                nn.BatchNorm2d(64),
                nn.ReLU(inplace=True),
                _conv3x3(64, 128),
            )
            self.inplanes = 128
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.inplanes = 64
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = make_act(act1) if act1 == "leaky" else nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=maxpool_ceil)
        dilations = dilations or [[1] * n for n in layers]
        self.new_keys: list[str] = []
        planes = (64, 128, 256, 512)
        for i in range(4):
            stage = self._make_layer(block, planes[i], layers[i], strides[i], dilations[i], act1)
            self.add_module(f"layer{i + 1}", stage)
            if stage[0].downsample is not None and not self._imagenet_has_downsample(block, i):
                self.new_keys += [f"layer{i + 1}.0.downsample.{k}" for k in _downsample_keys()]
        self.out_channels = tuple(p * block.expansion for p in planes)
        total = 4
        out_strides = []
        for s in strides:
            total *= s
            out_strides.append(total)
        self.out_strides = tuple(out_strides)
        kaiming_init(self)
        if zero_init_residual:
            for m in self.modules():
                last = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else None
                if isinstance(m, BasicBlock):
                    last = m.bn2
                if last is not None:
                    nn.init.zeros_(last.weight)

    def _imagenet_has_downsample(self, block: type, stage: int) -> bool:
        # An ImageNet file has a downsample in layer2-4 always, and in layer1 when the channels
        # change: bottlenecks (64 → 256) or the deep stem (128 → 64). FANet's stride-2 layer1 of
        # basic blocks is the one case no file covers.
        return stage > 0 or block is Bottleneck or self.deep_stem

    def _make_layer(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        planes: int,
        blocks: int,
        stride: int,
        dilations: Sequence[int],
        act1: str,
    ) -> nn.Sequential:
        if len(dilations) != blocks:
            raise ValueError(f"need one dilation per block ({blocks}), got {list(dilations)}")
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, dilations[0], downsample, act1)]
        self.inplanes = planes * block.expansion
        for d in dilations[1:]:
            layers.append(block(self.inplanes, planes, 1, d, None, act1))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]

    def load_pretrained(self, path: str | Path) -> None:
        """Load ImageNet weights from a local file; raise on any key or shape mismatch.

        Accepts a bare state_dict or one wrapped under ``state_dict``/``model``; a ``module.``
        prefix (DataParallel) and the ImageNet classifier ``fc.*`` are removed. Keys listed in
        ``new_keys`` may be absent and keep their initialisation. Loaded with
        ``weights_only=True``.
        """
        load_state_dict_checked(self, path, drop_prefixes=("fc.",), allowed_missing=self.new_keys)


def _downsample_keys() -> list[str]:
    return ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
            "1.num_batches_tracked"]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely and return its tensor state_dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CheckpointError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_state_dict_checked(
    module: nn.Module,
    path: str | Path,
    drop_prefixes: Sequence[str] = (),
    allowed_missing: Sequence[str] = (),
    rename: Callable[[str], str] | None = None,
) -> None:
    """Load ``path`` into ``module`` with ``strict=True`` after explicit, listed exceptions.

    ``rename`` maps the file's key names to the module's before anything is compared.

    Raises CheckpointError (a ValueError) naming the file and listing missing keys, unexpected
    keys and shape
    mismatches; never falls back to a silent partial load.
    """
    sd = read_state_dict(path)
    if rename is not None:
        sd = {rename(k): v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith(tuple(drop_prefixes))}
    own = module.state_dict()
    missing = sorted(set(own) - set(sd) - set(allowed_missing))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(sd) & set(own)
        if sd[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        parts = [f"{path}: weights do not match {type(module).__name__}"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", shapes)):
            if items:
                parts.append(f"  {title} ({len(items)}): " + ", ".join(items[:20])
                             + (" ..." if len(items) > 20 else ""))
        raise CheckpointError("\n".join(parts))
    merged = dict(own)
    merged.update(sd)
    module.load_state_dict(merged, strict=True)


def _build(
    name: str,
    block: type[BasicBlock] | type[Bottleneck],
    layers: Sequence[int],
    pretrained: str | Path | None,
    **kwargs,
) -> ResNet:
    model = ResNet(block, layers, **kwargs)
    if pretrained:
        model.load_pretrained(resolve_pretrained(name, pretrained))
    return model


def resnet18(pretrained: str | Path | None = None, **kwargs) -> ResNet:
    """torchvision ResNet-18 layout: 64/128/256/512 channels at strides 4/8/16/32."""
    return _build("resnet18", BasicBlock, (2, 2, 2, 2), pretrained, **kwargs)


def resnet34(pretrained: str | Path | None = None, **kwargs) -> ResNet:
    """torchvision ResNet-34 layout: 64/128/256/512 channels at strides 4/8/16/32."""
    return _build("resnet34", BasicBlock, (3, 4, 6, 3), pretrained, **kwargs)


def resnet50(pretrained: str | Path | None = None, **kwargs) -> ResNet:
    """torchvision ResNet-50 layout: 256/512/1024/2048 channels at strides 4/8/16/32."""
    return _build("resnet50", Bottleneck, (3, 4, 6, 3), pretrained, **kwargs)


def resnet18_deep(pretrained: str | Path | None = None, **kwargs) -> ResNet:
    """Deep-stem ResNet-18 (GAIN): stem 64-64-128, then 64/128/256/512 at strides 4..32."""
    return _build("resnet18_deep", BasicBlock, (2, 2, 2, 2), pretrained, deep_stem=True, **kwargs)


def resnet50_deep(pretrained: str | Path | None = None, **kwargs) -> ResNet:
    """Deep-stem ResNet-50 ("ResNet-50-C", IFA): ceil-mode max-pool, zero-init residuals."""
    kwargs.setdefault("maxpool_ceil", True)
    kwargs.setdefault("zero_init_residual", True)
    return _build("resnet50_deep", Bottleneck, (3, 4, 6, 3), pretrained, deep_stem=True, **kwargs)


def resnet18_fanet(pretrained: str | Path | None = None, **kwargs) -> ResNet:
    """FANet's ResNet-18: every stage stride 2 (levels at strides 8/16/32/64), LeakyReLU."""
    return _build("resnet18_fanet", BasicBlock, (2, 2, 2, 2), pretrained, strides=(2, 2, 2, 2),
                  act1="leaky", **kwargs)


def resnet34_fanet(pretrained: str | Path | None = None, **kwargs) -> ResNet:
    """FANet's ResNet-34: every stage stride 2 (levels at strides 8/16/32/64), LeakyReLU."""
    return _build("resnet34_fanet", BasicBlock, (3, 4, 6, 3), pretrained, strides=(2, 2, 2, 2),
                  act1="leaky", **kwargs)


BACKBONES = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet18_deep": resnet18_deep,
    "resnet50_deep": resnet50_deep,
    "resnet18_fanet": resnet18_fanet,
    "resnet34_fanet": resnet34_fanet,
}
