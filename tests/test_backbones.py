"""Backbones: torchvision layout and key names, strides, strict loading of local files."""

import pytest
import torch

from rtseg.backbones import create_backbone

# Key names and shapes as in torchvision's ImageNet files (torchvision itself is not usable
# here); a torchvision resnet18 state_dict has 122 entries, resnet50 320, fc included.
TORCHVISION = {
    "resnet18": (122, {"conv1.weight": (64, 3, 7, 7), "bn1.running_var": (64,),
                       "layer1.0.conv1.weight": (64, 64, 3, 3),
                       "layer2.0.downsample.0.weight": (128, 64, 1, 1),
                       "layer4.1.bn2.num_batches_tracked": ()}),
    "resnet34": (218, {"layer3.5.conv2.weight": (256, 256, 3, 3)}),
    "resnet50": (320, {"layer1.0.downsample.0.weight": (256, 64, 1, 1),
                       "layer1.0.conv2.weight": (64, 64, 3, 3),
                       "layer4.2.conv3.weight": (2048, 512, 1, 1)}),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_key_names(name):
    n_keys, samples = TORCHVISION[name]
    sd = create_backbone(name).state_dict()
    assert len(sd) + 2 == n_keys  # + fc.weight, fc.bias
    for key, shape in samples.items():
        assert tuple(sd[key].shape) == shape, key


@pytest.mark.parametrize(
    "name,strides,channels",
    [
        ("resnet18", (4, 8, 16, 32), (64, 128, 256, 512)),
        ("resnet50", (4, 8, 16, 32), (256, 512, 1024, 2048)),
        ("resnet18_deep", (4, 8, 16, 32), (64, 128, 256, 512)),
        ("resnet18_fanet", (8, 16, 32, 64), (64, 128, 256, 512)),
        ("resnet34_fanet", (8, 16, 32, 64), (64, 128, 256, 512)),
    ],
)
def test_declared_strides_and_channels_are_real(name, strides, channels):
    bb = create_backbone(name).eval()
    assert bb.out_strides == strides and bb.out_channels == channels
    feats = bb(torch.randn(1, 3, 128, 256))
    for f, s, c in zip(feats, strides, channels):
        assert f.shape == (1, c, 128 // s, 256 // s)


def test_deep_stem_uses_simpleseg_key_names():
    sd = create_backbone("resnet18_deep").state_dict()
    assert tuple(sd["conv1.0.weight"].shape) == (64, 3, 3, 3)
    assert tuple(sd["conv1.6.weight"].shape) == (128, 64, 3, 3)
    assert tuple(sd["bn1.weight"].shape) == (128,)
    assert tuple(sd["layer1.0.downsample.0.weight"].shape) == (64, 128, 1, 1)


def _imagenet_file(tmp_path, name="resnet18", wrap=False):
    src = create_backbone(name)
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    for v in sd.values():
        if v.is_floating_point():
            v.normal_()
    sd["fc.weight"] = torch.randn(1000, src.out_channels[-1])
    sd["fc.bias"] = torch.randn(1000)
    obj = {"state_dict": {f"module.{k}": v for k, v in sd.items()}} if wrap else sd
    path = tmp_path / f"{name}.pth"
    torch.save(obj, path)
    return path, sd


@pytest.mark.parametrize("wrap", [False, True])
def test_loads_torchvision_file_strictly(tmp_path, wrap):
    path, sd = _imagenet_file(tmp_path, wrap=wrap)
    bb = create_backbone("resnet18", pretrained=str(path))
    for k, v in bb.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_fanet_layout_keeps_only_its_new_downsample(tmp_path):
    path, sd = _imagenet_file(tmp_path)
    bb = create_backbone("resnet18_fanet", pretrained=str(path))
    own = bb.state_dict()
    assert set(own) - set(sd) == {k for k in own if k.startswith("layer1.0.downsample.")}
    assert torch.equal(own["layer3.1.conv2.weight"], sd["layer3.1.conv2.weight"])


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    path, sd = _imagenet_file(tmp_path)
    del sd["layer2.0.conv1.weight"]
    sd["layer9.weight"] = torch.zeros(1)
    sd["bn1.weight"] = torch.zeros(3)
    torch.save(sd, path)
    with pytest.raises(ValueError) as err:
        create_backbone("resnet18", pretrained=str(path))
    msg = str(err.value)
    assert str(path) in msg
    assert "missing keys (1): layer2.0.conv1.weight" in msg
    assert "unexpected keys (1): layer9.weight" in msg
    assert "bn1.weight: file (3,) vs model (64,)" in msg


def test_wrong_architecture_file_is_rejected(tmp_path):
    path, _ = _imagenet_file(tmp_path, "resnet50")
    with pytest.raises(ValueError, match="shape mismatches"):
        create_backbone("resnet18", pretrained=str(path))


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        create_backbone("resnet18", pretrained=str(tmp_path / "nothere.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth: cannot read weights"):
        create_backbone("resnet18", pretrained=str(bad))


def test_create_model_passes_pretrained_backbone(tmp_path):
    import rtseg

    path, sd = _imagenet_file(tmp_path)
    model = rtseg.create_model("fpn_r18_bilinear", 3, pretrained_backbone=str(path))
    assert torch.equal(model.backbone.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])


def test_dfnetv2_levels_and_official_key_names(tmp_path):
    bb = create_backbone("dfnetv2").eval()
    assert bb.out_strides == (8, 16, 32) and bb.out_channels == (128, 256, 512)
    feats = bb(torch.randn(1, 3, 128, 256))
    assert [tuple(f.shape) for f in feats] == [(1, c, 128 // s, 256 // s)
                                               for c, s in zip(bb.out_channels, bb.out_strides)]
    assert [tuple(f.shape[-2:]) for f in bb(torch.randn(1, 3, 97, 131))] == [
        (13, 17), (7, 9), (4, 5)]
    sd = bb.state_dict()  # simpleseg's backbone/dfnet.py names
    assert tuple(sd["stage1.3.weight"].shape) == (64, 32, 3, 3)
    assert tuple(sd["stage2_2.0.downsample.0.weight"].shape) == (128, 64, 1, 1)
    assert tuple(sd["stage3_1.9.conv2.weight"].shape) == (128, 128, 3, 3)
    assert tuple(sd["stage4_2.1.bn2.running_var"].shape) == (512,)
    # an ImageNet file (with its classifier) loads strictly
    src = {k: v.clone().normal_() if v.is_floating_point() else v for k, v in sd.items()}
    torch.save({**src, "fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)},
               tmp_path / "df2_imagenet.pth")
    loaded = create_backbone("dfnetv2", pretrained=str(tmp_path / "df2_imagenet.pth"))
    assert all(torch.equal(v, src[k]) for k, v in loaded.state_dict().items())
    del src["stage3_2.0.conv1.weight"]
    torch.save(src, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing keys \\(1\\): stage3_2.0.conv1.weight"):
        create_backbone("dfnetv2", pretrained=str(tmp_path / "bad.pth"))
