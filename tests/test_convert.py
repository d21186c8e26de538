"""rtseg convert: state dicts in each official key layout (written here from the official model
definitions, random values) convert, load strictly, and equal the same weights set by hand."""

from __future__ import annotations

import pytest
import torch

import rtseg
from rtseg.cli import main
from rtseg.convert import convert, convert_state_dict
from rtseg.errors import CheckpointError

K = 5


def _bn(sd, prefix, c):
    sd[f"{prefix}.weight"], sd[f"{prefix}.bias"] = torch.rand(c) + 0.5, torch.randn(c)
    sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"] = torch.randn(c), torch.rand(c) + .5
    sd[f"{prefix}.num_batches_tracked"] = torch.tensor(7)


def _conv(sd, prefix, cout, cin, k=1, bias=False, dims=2):
    sd[f"{prefix}.weight"] = torch.randn(cout, cin, *(k,) * dims) * 0.1
    if bias:
        sd[f"{prefix}.bias"] = torch.randn(cout) * 0.1


def _backbone(sd, prefix, net):
    for key, v in net.backbone.state_dict().items():  # the same layout as rtseg's backbones
        if not v.is_floating_point():
            sd[prefix + key] = torch.tensor(7)
        elif key.endswith("running_var") or (v.dim() == 1 and key.endswith("weight")):
            sd[prefix + key] = torch.rand_like(v) + 0.5  # BN scale and variance: positive
        else:
            sd[prefix + key] = torch.randn_like(v) * 0.05


# -- FANet Train/: ptsemseg FANet(resnet18) ---------------------------------------------------
def fanet_official():
    sd = {}
    _backbone(sd, "resnet.", rtseg.create_model("fanet18", K))
    for ffm, c in (("ffm_32", 512), ("ffm_16", 256), ("ffm_8", 128), ("ffm_4", 64)):
        for conv, out, k in (("w_qs", 32, 1), ("w_ks", 32, 1), ("w_vs", c, 1),
                             ("latlayer3", c, 1), ("up", c // 2, 1), ("smooth", 128, 3)):
            _conv(sd, f"{ffm}.{conv}.conv", out, c, k)
            _bn(sd, f"{ffm}.{conv}.bn", out)
    for cls, cin, mid in (("clslayer_32", 128, 64), ("clslayer_16", 128, 64),
                          ("clslayer_8", 256, 256)):
        _conv(sd, f"{cls}.conv.conv", mid, cin, 3)
        _bn(sd, f"{cls}.conv.bn", mid)
        _conv(sd, f"{cls}.conv_out", K, mid)
    return sd


def _set(module, sd, prefix, conv="conv", bn="bn"):
    """Copy a conv (+ its bias) and a BN from ``prefix.{conv,bn}`` into a module with the
    attributes ``conv``/``bn`` (ConvBNAct, SegHead)."""
    with torch.no_grad():
        module.conv.weight.copy_(sd[f"{prefix}.{conv}.weight"].view_as(
            module.conv.weight))
        if module.conv.bias is not None:
            module.conv.bias.copy_(sd[f"{prefix}.{conv}.bias"])
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            getattr(module.bn, name).copy_(sd[f"{prefix}.{bn}.{name}"])


def fanet_by_hand(sd):
    net = rtseg.create_model("fanet18", K, mean=False, up_padding=True, align_corners=True)
    net.backbone.load_state_dict({k[7:]: v for k, v in sd.items() if k.startswith("resnet.")})
    for ffm, level in (("ffm_32", net.level32), ("ffm_16", net.level16), ("ffm_8", net.level8),
                       ("ffm_4", net.level4)):
        att = level.attention
        for conv, module in (("w_qs", att.query), ("w_ks", att.key), ("w_vs", att.value),
                             ("latlayer3", att.project), ("up", level.up),
                             ("smooth", level.smooth)):
            if module is not None:
                _set(module, sd, f"{ffm}.{conv}")
    _set(net.head[0], sd, "clslayer_8.conv")
    with torch.no_grad():
        net.head[1].weight.copy_(sd["clslayer_8.conv_out.weight"])
        for head, cls in zip(net.aux_heads, ("clslayer_32", "clslayer_16"), strict=True):
            _set(head, sd, f"{cls}.conv")
            head.cls.weight.copy_(sd[f"{cls}.conv_out.weight"])
    return net


# -- GAIN: simpleseg ResCLANet (CLAHead, gap, fuse3×3) ------------------------------------------
def gain_official():
    sd, c = {}, 128
    _backbone(sd, "backbone.", rtseg.create_model("gain_r18", K))
    for i, cin in enumerate((64, 128, 256, 512)):
        _conv(sd, f"seg_head.fpn_in.{i}.0", c, cin)
        _bn(sd, f"seg_head.fpn_in.{i}.1", c)
    for conv, k in (("conv1", 1), ("conv2", 3)):
        _conv(sd, f"seg_head.ppm.{conv}.0", c, c, k)
        _bn(sd, f"seg_head.ppm.{conv}.1", c)
    for i in range(2):
        cla = f"seg_head.cross_layer_attentions.{i}"
        _conv(sd, f"{cla}.conv1", 64, 2 * c, bias=True)
        _conv(sd, f"{cla}.conv2", 64, c, bias=True)
        _conv(sd, f"{cla}.attention.query_conv", 8, 64, bias=True)
        _conv(sd, f"{cla}.attention.key_conv", 8, 64, bias=True)
        _conv(sd, f"{cla}.attention.value_conv", 64, 64, bias=True)
        sd[f"{cla}.attention.gamma"] = torch.randn(1)
        _conv(sd, f"{cla}.bottleneck.0", c, 64 + c)
        _bn(sd, f"{cla}.bottleneck.1", c)
    _conv(sd, "seg_head.merge.0", c, 3 * c)
    _bn(sd, "seg_head.merge.1", c)
    _conv(sd, "seg_head.merge.3", c, c, 3)
    _bn(sd, "seg_head.merge.4", c)
    _conv(sd, "seg_head.output.0", c, 2 * c)
    _bn(sd, "seg_head.output.1", c)
    _conv(sd, "seg_head.output.4", K, c, bias=True)
    for i in range(2):
        _conv(sd, f"dsn.{i}.layers.0", c, c, 3, bias=True)
        _bn(sd, f"dsn.{i}.layers.1", c)
        _conv(sd, f"dsn.{i}.layers.4", K, c, bias=True)
    return sd


def gain_by_hand(sd):
    net = rtseg.create_model("gain_r18", K)  # gap + fuse3×3 + dilated: the official defaults
    net.backbone.load_state_dict({k[9:]: v for k, v in sd.items() if k.startswith("backbone.")})
    for i, lat in enumerate(net.lateral):
        _set(lat, sd, f"seg_head.fpn_in.{i}", "0", "1")
    _set(net.context.pooled, sd, "seg_head.ppm.conv1", "0", "1")
    _set(net.context.fuse, sd, "seg_head.ppm.conv2", "0", "1")
    with torch.no_grad():
        for i, gai in enumerate((net.gai4, net.gai5)):
            cla = f"seg_head.cross_layer_attentions.{i}"
            for ours, theirs in ((gai.query_source, "conv1"), (gai.value_source, "conv2"),
                                 (gai.attention.query, "attention.query_conv"),
                                 (gai.attention.key, "attention.key_conv"),
                                 (gai.attention.value, "attention.value_conv")):
                ours.weight.copy_(sd[f"{cla}.{theirs}.weight"])
                ours.bias.copy_(sd[f"{cla}.{theirs}.bias"])
            gai.attention.gamma.copy_(sd[f"{cla}.attention.gamma"])
            _set(gai.fuse, sd, f"{cla}.bottleneck", "0", "1")
        _set(net.merge[0], sd, "seg_head.merge", "0", "1")
        _set(net.merge[1], sd, "seg_head.merge", "3", "4")
        _set(net.head[0], sd, "seg_head.output", "0", "1")
        net.head[2].weight.copy_(sd["seg_head.output.4.weight"])
        net.head[2].bias.copy_(sd["seg_head.output.4.bias"])
        for i, head in enumerate(net.aux_heads):
            _set(head, sd, f"dsn.{i}.layers", "0", "1")
            head.cls.weight.copy_(sd[f"dsn.{i}.layers.4.weight"])
            head.cls.bias.copy_(sd[f"dsn.{i}.layers.4.bias"])
    return net


# -- IFA: ModelBuilder(resnet50 deep stem, fpn_ifa no_aspp, ultra_pe, require_grad) ----------
def ifa_official():
    sd = {}
    _backbone(sd, "encoder.", rtseg.create_model("ifa_r50", K))
    _conv(sd, "decoder.head.0", 256, 2048, bias=True)
    _bn(sd, "decoder.head.1", 256)
    for i, cin in enumerate((256, 512, 1024), start=1):
        _conv(sd, f"decoder.enc{i}.0", 256, cin, bias=True)
        _bn(sd, f"decoder.enc{i}.1", 256)
    for i in range(1, 5):
        sd[f"decoder.ifa.pos{i}.emb"] = torch.rand(12, 2) * 10
    for idx, (cout, cin) in zip((0, 3, 6, 9), ((512, 1128), (256, 512), (256, 256), (K, 256)),
                                strict=True):
        _conv(sd, f"decoder.ifa.imnet.{idx}", cout, cin, bias=True, dims=1)  # Conv1d
        if idx < 9:
            _bn(sd, f"decoder.ifa.imnet.{idx + 1}", cout)  # BatchNorm1d
    _conv(sd, "auxor.aux.0", 256, 1024, 3, bias=True)
    _bn(sd, "auxor.aux.1", 256)
    _conv(sd, "auxor.aux.4", K, 256, bias=True)
    return sd


def ifa_by_hand(sd):
    net = rtseg.create_model("ifa_r50", K, align_corners=True)
    net.backbone.load_state_dict({k[8:]: v for k, v in sd.items() if k.startswith("encoder.")})
    for i in range(3):
        _set(net.encoders[i], sd, f"decoder.enc{i + 1}", "0", "1")
    _set(net.encoders[3], sd, "decoder.head", "0", "1")
    dec = net.decoder
    with torch.no_grad():
        for i, enc in enumerate(dec.encodings):
            enc.freqs.copy_(sd[f"decoder.ifa.pos{i + 1}.emb"])
        for conv, idx in ((dec.first, 0), (dec.rest[2], 3), (dec.rest[5], 6), (dec.rest[8], 9)):
            conv.weight.copy_(sd[f"decoder.ifa.imnet.{idx}.weight"][..., None])
            conv.bias.copy_(sd[f"decoder.ifa.imnet.{idx}.bias"])
        for bn, idx in ((dec.rest[0], 1), (dec.rest[3], 4), (dec.rest[6], 7)):
            for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                getattr(bn, name).copy_(sd[f"decoder.ifa.imnet.{idx}.{name}"])
        _set(net.aux_head, sd, "auxor.aux", "0", "1")
        net.aux_head.cls.weight.copy_(sd["auxor.aux.4.weight"])
        net.aux_head.cls.bias.copy_(sd["auxor.aux.4.bias"])
    return net


CASES = {"fanet": (fanet_official, fanet_by_hand), "gain": (gain_official, gain_by_hand),
         "ifa": (ifa_official, ifa_by_hand)}


@pytest.mark.parametrize("source", list(CASES))
def test_official_layout_converts_to_the_weights_set_by_hand(source, tmp_path, one_thread):
    official, by_hand = CASES[source]
    torch.manual_seed(0)
    sd = official()
    src = tmp_path / "official.pth"
    torch.save({"model_state" if source != "gain" else "model":
                {"module." + k: v for k, v in sd.items()}, "iteration": 3}, src)
    conv = convert(src, tmp_path / "rtseg.pt", source)
    hand = by_hand(sd).eval()
    assert conv.num_classes == K
    # every official key: mapped or dropped with a reason
    assert conv.mapped + len(conv.dropped) == len(sd)
    if source == "fanet":
        assert set(conv.dropped) == {k for k in sd if k.startswith(("ffm_8.smooth.",
                                                                    "ffm_4.up."))}
        assert all("never run" in why for why in conv.dropped.values())
    else:
        assert not conv.dropped
    seg = rtseg.load(tmp_path / "rtseg.pt", device="cpu")
    loaded = seg.model
    got = loaded.state_dict()
    assert got.keys() == hand.state_dict().keys()
    assert all(torch.equal(got[k], v) for k, v in hand.state_dict().items())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = loaded(x)
        assert torch.isfinite(out).all() and torch.equal(out, hand(x))


def test_checkpoint_carries_options_and_dataset_classes(tmp_path):
    torch.manual_seed(0)
    sd = fanet_official()
    torch.save({"model_state": sd}, tmp_path / "f.pkl")
    convert(tmp_path / "f.pkl", tmp_path / "a.pt", "fanet", dataset="camvid" if K == 11 else None,
            classes=[f"c{k}" for k in range(K)])
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)
    assert ckpt["config"]["model"] == "fanet18"
    assert ckpt["config"]["model_kwargs"] == {"mean": False, "up_padding": True,
                                              "align_corners": True}
    assert ckpt["classes"] == [f"c{k}" for k in range(K)] and len(ckpt["palette"]) == K


def test_unknown_missing_and_unsupported_keys_are_refused():
    torch.manual_seed(0)
    sd = fanet_official()
    with pytest.raises(CheckpointError, match="no fanet rule maps.*mystery"):
        convert_state_dict({**sd, "mystery.weight": torch.zeros(1)}, "fanet")
    partial = {k: v for k, v in sd.items() if not k.startswith("ffm_16.w_vs.")}
    with pytest.raises(CheckpointError, match="do not fit.*level16.attention.value"):
        convert_state_dict(partial, "fanet")
    bad = dict(sd, **{"ffm_32.up.conv.weight": torch.zeros(3, 3, 1, 1)})
    with pytest.raises(CheckpointError, match="shape"):
        convert_state_dict(bad, "fanet")
    with pytest.raises(CheckpointError, match="ASPP"):
        convert_state_dict({"decoder.aspp.x": torch.zeros(1), **ifa_like()}, "ifa")


def ifa_like():
    return {"decoder.ifa.imnet.0.weight": torch.zeros(4, 8, 1),
            "decoder.enc1.0.weight": torch.zeros(4, 8, 1, 1)}


def test_cli_convert_writes_a_loadable_checkpoint_and_fails_in_one_line(tmp_path, capsys):
    torch.manual_seed(0)
    torch.save({"model_state": fanet_official()}, tmp_path / "f.pkl")
    assert main(["convert", str(tmp_path / "f.pkl"), str(tmp_path / "o.pt"), "--source",
                 "fanet", "--model", "fanet18_temp"]) == 0
    out = capsys.readouterr().out
    assert "fanet18_temp" in out and "dropped ffm_8.smooth.conv.weight" in out
    assert rtseg.load(tmp_path / "o.pt", device="cpu").model.past == 1
    torch.save({"model_state": {"x": torch.zeros(1)}}, tmp_path / "bad.pkl")
    assert main(["convert", str(tmp_path / "bad.pkl"), str(tmp_path / "b.pt"),
                 "--source", "fanet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and not (tmp_path / "b.pt").exists()


def test_convert_help_documents_the_three_sources(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = capsys.readouterr().out
    for words in ("simpleseg", "Train/", "hzhupku/IFA", "gain", "fanet", "ifa"):
        assert words in text
