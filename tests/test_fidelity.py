"""Official-compatible switches, checked against the official behaviour written out longhand.

Each reference below is the official code's computation as plain tensor operations (read from
FANet ``Train/ptsemseg/models/fanet/fanet.py``, IFA ``pyseg/models/model_helper.py`` and
simpleseg ``backbone/resnet.py``), fed the rtseg model's own weights; the rtseg model with the
switch on must equal it, and with the switch off must not.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rtseg
from rtseg.data.history import context_positions


def _cbr(x, m, padding, act):
    """Conv (given padding) → BN (running statistics) → LeakyReLU(0.01) or nothing."""
    y = F.conv2d(x, m.conv.weight, m.conv.bias, padding=padding)
    y = F.batch_norm(y, m.bn.running_mean, m.bn.running_var, m.bn.weight, m.bn.bias,
                     False, 0.0, m.bn.eps)
    return F.leaky_relu(y, 0.01) if act else y


def _official_fanet_level(level, feat, up_in):
    """LAFeatureFusionModule.forward: no 1/n, ``up`` with padding=1, align_corners=True."""
    att = level.attention
    n, c, h, w = feat.shape
    q = F.normalize(_cbr(feat, att.query, 0, False).view(n, 32, -1).permute(0, 2, 1), dim=2)
    k = F.normalize(_cbr(feat, att.key, 0, False).view(n, 32, -1), dim=1)
    v = _cbr(feat, att.value, 0, True).view(n, c, -1).permute(0, 2, 1)
    y = torch.matmul(q, torch.matmul(k, v)).permute(0, 2, 1).reshape(n, c, h, w)
    p = _cbr(y, att.project, 0, True) + feat
    if up_in is not None:
        p = F.interpolate(up_in, (h, w), mode="bilinear", align_corners=True) + p
    up = _cbr(p, level.up, 1, True) if level.up is not None else None
    smooth = _cbr(p, level.smooth, 1, True) if level.smooth is not None else None
    return up, smooth


def _official_fanet(model, x):
    f4, f8, f16, f32 = model.backbone(x)
    up32, _ = _official_fanet_level(model.level32, f32, None)
    up16, sm16 = _official_fanet_level(model.level16, f16, up32)
    up8, _ = _official_fanet_level(model.level8, f8, up16)
    _, sm4 = _official_fanet_level(model.level4, f4, up8)
    cat = torch.cat([F.interpolate(sm16, sm4.shape[-2:], mode="bilinear", align_corners=True),
                     sm4], dim=1)
    logits = F.conv2d(_cbr(cat, model.head[0], 1, True), model.head[1].weight)
    return F.interpolate(logits, x.shape[-2:], mode="bilinear", align_corners=True)


def _same_weights(name, randomise, **options):
    torch.manual_seed(0)
    default = randomise(rtseg.create_model(name, 5)).double()
    switched = rtseg.create_model(name, 5, **options).double().eval()
    switched.load_state_dict(default.state_dict())
    return default, switched


def test_fanet_official_switches_equal_the_official_computation(randomise, one_thread):
    default, official = _same_weights("fanet18", randomise, mean=False, up_padding=True,
                                      align_corners=True)
    x = torch.randn(1, 3, 128, 192, dtype=torch.float64)
    with torch.no_grad():
        ref = _official_fanet(official, x)
        got = official(x)
        assert (got - ref).abs().max() <= 1e-9 * ref.abs().max()
        # the padded 1×1 conv: each up feature two pixels larger, with a constant border
        up32, _ = official.level32(official.backbone(x)[3], None)
        assert up32.shape[-2:] == (4, 5)
        # each switch alone changes the logits; with none of them, rtseg's own network
        for opts in ({"up_padding": True}, {"align_corners": True}, {"mean": False}):
            one = rtseg.create_model("fanet18", 5, **opts).double().eval()
            one.load_state_dict(default.state_dict())
            assert not torch.allclose(one(x), default(x)), opts
            assert not torch.allclose(one(x), ref), opts


def test_fanet_temp_shares_the_switches(randomise, one_thread):
    _, official = _same_weights("fanet18_temp", randomise, mean=False, up_padding=True,
                                align_corners=True)
    x = torch.randn(1, 3, 128, 128, dtype=torch.float64)
    with torch.no_grad():
        ref = _official_fanet(official, x)
        assert (official(x) - ref).abs().max() <= 1e-9 * ref.abs().max()


def test_ifa_align_corners_is_the_official_final_resize(randomise, one_thread):
    default, official = _same_weights("ifa_r18", randomise, align_corners=True)
    x = torch.randn(1, 3, 96, 128, dtype=torch.float64)
    with torch.no_grad():
        levels = [enc(f) for enc, f in zip(official.encoders, official.backbone(x), strict=True)]
        low = official.decoder(levels, tuple(levels[0].shape[-2:]))  # B×K×H/4×W/4
        ref = F.interpolate(low, x.shape[-2:], mode="bilinear", align_corners=True)
        assert (official(x) - ref).abs().max() <= 1e-12 * ref.abs().max()
        assert not torch.allclose(default(x), ref)


def _official_basic_block(x, blk):
    """simpleseg BasicBlock with RESNET.DILATIONS=(1, 1): two 3×3 convs, padding 1."""
    def bn(y, m):
        return F.batch_norm(y, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0,
                            m.eps)
    out = F.relu(bn(F.conv2d(x, blk.conv1.weight, stride=blk.conv1.stride, padding=1), blk.bn1))
    out = bn(F.conv2d(out, blk.conv2.weight, padding=1), blk.bn2)
    short = x if blk.downsample is None else blk.downsample(x)
    return F.relu(out + short)


def test_gain_camvid_network_has_no_dilation_context_or_3x3_fuse(randomise, one_thread):
    default, camvid = _same_weights("gain_r18", randomise, dilate=False)
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        bb = camvid.backbone
        y = bb.maxpool(bb.relu(bb.bn1(bb.conv1(x))))
        for layer in (bb.layer1, bb.layer2, bb.layer3, bb.layer4):
            for blk in layer:
                y = _official_basic_block(y, blk)
        got = camvid.backbone(x)[-1]
        assert (got - y).abs().max() <= 1e-12 * y.abs().max()
        assert not torch.allclose(default.backbone(x)[-1], y)  # the Cityscapes net dilates
    plain = rtseg.create_model("gain_r18", 5, dilate=False, context=False, fuse3x3=False)
    keys = plain.state_dict().keys()
    assert not any(k.startswith("context.") for k in keys)
    assert not any(k.startswith("merge.1.") for k in keys)


def test_model_options_list_the_switches():
    assert {"mean", "up_padding", "align_corners"} <= set(rtseg.model_options("fanet34"))
    assert {"past", "up_padding", "align_corners"} <= set(rtseg.model_options("fanet34_temp"))
    assert rtseg.model_options("fanet18_temp")["past"] == 1
    assert rtseg.model_options("ifa_r50")["align_corners"] is False
    assert rtseg.model_options("gain_r18")["dilate"] is True


@pytest.mark.parametrize("past", [1, 2])
def test_a_drives_first_frames_agree_in_clips_and_streaming(randomise, one_thread, past):
    """The data set's padded clip (f0, …, f0, f_k), the model's clip call on the frames seen so
    far, and streaming give the same logits on every frame, the first ones included."""
    torch.manual_seed(0)
    model = randomise(rtseg.create_model("fanet18_temp", 5, past=past)).double()
    video = torch.randn(1, 4, 3, 64, 64, dtype=torch.float64)
    state = None
    with torch.no_grad():
        for k in range(4):
            streamed, state = model.step(video[:, k], state)
            padded = video[:, context_positions(k, past) + [k]]  # what camvid_clips builds
            for other in (model(padded), model(video[:, : k + 1])):
                assert (streamed - other).abs().max() <= 1e-9 * streamed.abs().max(), k


def test_context_positions_repeat_the_first_frame():
    assert context_positions(0, 2) == [0, 0]
    assert context_positions(1, 2) == [0, 0]
    assert context_positions(3, 2) == [1, 2]
    assert context_positions(5, 0) == []
