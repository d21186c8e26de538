"""The public API: rtseg.load → Segmenter, rtseg.evaluate, rtseg.train, create_model options."""

import numpy as np
import pytest
import torch
from PIL import Image

import rtseg
from rtseg.errors import CheckpointError, ConfigError, UnknownNameError, UsageError

TINY = dict(model="fpn_r18_bilinear", dataset="synthetic", crop_size=[32, 48],
            dataset_kwargs={"size": [32, 48], "num_images": dict(train=8, val=2, test=2)},
            batch_size=4, iters=2, eval_interval=2, ckpt_interval=2, workers=0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return rtseg.train(TINY, out_dir=str(tmp_path_factory.mktemp("runs")), run_name="tiny")


@pytest.fixture(scope="module")
def seg(run):
    return rtseg.load(run / "best.pt", device="cpu")


def _image(seed=0, h=32, w=48):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_segmenter_matches_the_model_on_every_input_form(seg, tmp_path):
    image = _image()
    path = tmp_path / "x.png"
    Image.fromarray(image).save(path)
    labels = seg(image)
    assert labels.shape == (32, 48) and labels.dtype == np.uint8
    # the plain computation: normalise with ImageNet statistics, model, argmax
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = seg.model((x - mean) / std).argmax(1)[0].numpy()
    assert np.array_equal(labels, expected)
    assert np.array_equal(seg(Image.fromarray(image)), labels)
    assert np.array_equal(seg(path), labels)
    assert np.array_equal(seg(str(path)), labels)
    t = torch.from_numpy(image).permute(2, 0, 1)
    assert torch.equal(seg(t), torch.from_numpy(labels).long())
    assert torch.equal(seg(t.float() / 255), torch.from_numpy(labels).long())
    batch = torch.stack([t, torch.from_numpy(_image(1)).permute(2, 0, 1)])
    out = seg(batch)
    assert out.shape == (2, 32, 48) and torch.equal(out[0], torch.from_numpy(labels).long())
    logits = seg.logits(image)
    assert logits.shape == (seg.num_classes, 32, 48)
    assert np.array_equal(logits.argmax(0).numpy(), labels)


def test_segmenter_options_and_pictures(seg):
    image = _image(2, 40, 56)
    flipped = seg(image, flip=True, scales=[0.75, 1.0])
    assert flipped.shape == (40, 56)
    slid = seg(image, mode="slide", crop=(32, 32), stride=(16, 16))
    assert slid.shape == (40, 56)
    colours = seg.colorize(slid)
    assert colours.shape == (40, 56, 3)
    assert colours[0, 0].tolist() == list(seg.palette[slid[0, 0]])
    blended = seg.overlay(image, slid, alpha=1.0)
    assert np.array_equal(blended, colours)
    assert seg.classes == ["road", "sidewalk", "building", "vegetation", "sky", "pole", "sign",
                           "car"]


def test_segmenter_rejects_bad_input(seg):
    with pytest.raises(UsageError, match="unknown inference option"):
        seg(_image(), scale=2)
    with pytest.raises(UsageError, match="needs crop"):
        seg(_image(), mode="slide")
    with pytest.raises(UsageError, match="stride applies to mode='slide'"):
        seg(_image(), stride=(8, 8))
    with pytest.raises(UsageError, match="H×W×3"):
        seg(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(UsageError, match=r"expected floats in \[0, 1\] \(or uint8 0–255\)"):
        seg(np.full((4, 4, 3), 255, np.float32))
    with pytest.raises(UsageError, match="cannot read an image from list"):
        seg([1, 2])
    with pytest.raises(rtseg.data.DataError, match="missing image"):
        seg("no/such/file.png")


def test_options_are_checked_everywhere(run, seg):
    assert seg(_image(), scales=1.0).shape == (32, 48)  # a number is one scale
    res = rtseg.evaluate(run / "best.pt", split="test", device="cpu", scales=1.0, progress=False)
    assert res["scales"] == [1.0]
    for bad, match in [({"mode": "slide"}, "needs crop"), ({"scales": [0]}, "scales must be"),
                       ({"mode": "slide", "crop": (0, 0)}, "crop must be two positive"),
                       ({"stride": (4, 4)}, "stride applies")]:
        with pytest.raises(UsageError, match=match):
            rtseg.evaluate(run / "best.pt", split="test", device="cpu", **bad)
        with pytest.raises(UsageError, match=match):
            seg(_image(), **bad)


def test_load_refuses_non_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt: cannot read checkpoint"):
        rtseg.load(bad)
    with pytest.raises(FileNotFoundError, match="missing.pt: checkpoint not found"):
        rtseg.load(tmp_path / "missing.pt")


def test_evaluate_path_segmenter_and_model_agree(run, seg):
    a = rtseg.evaluate(run / "best.pt", split="test", device="cpu", progress=False)
    b = rtseg.evaluate(seg, data=rtseg.data.Synthetic("test", size=(32, 48), num_images=2,
                                                      transform=rtseg.data.transforms
                                                      .eval_transforms()), progress=False)
    assert a["images"] == b["images"] == 2
    assert a["miou"] == pytest.approx(b["miou"]) and a["iou"] == pytest.approx(b["iou"])
    assert a["split"] == "test" and a["classes"] == seg.classes
    with pytest.raises(UsageError, match="give data=PATH"):
        rtseg.evaluate(seg.model)


def test_train_checks_everything_before_creating_the_run_folder(tmp_path):
    for bad, match in [({"model": "nosuch"}, "unknown model 'nosuch'"),
                       ({"iters": 0}, "iters must be >= 1"),
                       ({"lr": float("nan")}, "lr must be a finite number"),
                       ({"model_kwargs": {"nope": 1}}, "has no option nope"),
                       ({"dataset": "camvid"}, "needs data_root")]:
        with pytest.raises((ConfigError, UnknownNameError), match=match):
            rtseg.train(TINY, out_dir=str(tmp_path), run_name="x", **bad)
        assert not (tmp_path / "x").exists()


def test_create_model_forwards_options():
    m = rtseg.create_model("fpn_r18_gum", 3, upsampler_kwargs={"guidance": "high_res"},
                           channels=32)
    assert all(up.guidance == "high_res" for up in m.top_down)
    assert m.head[-1].in_channels == 32
    fan = rtseg.create_model("fanet18", 3, mean=False)
    assert fan.level32.attention.mean is False
    assert rtseg.create_model("gun", 3, guidance="large_rf").gum.guidance == "large_rf"
    deeper = rtseg.create_model("fpn_r18_bilinear", 3, backbone="resnet34")
    assert len(deeper.backbone.layer3) == 6
    with pytest.raises(ConfigError, match="4-level backbone; 'dfnetv2' has 3 levels"):
        rtseg.create_model("fpn_r18_bilinear", 3, backbone="dfnetv2")
    with pytest.raises(UnknownNameError, match="'fanet18' has no option 'foo'; its options: mean"):
        rtseg.create_model("fanet18", 3, foo=1)
    assert rtseg.model_options("gain_r18") == {"channels": 128, "context": True,
                                               "fuse3x3": True, "dilate": True}


def test_list_models_filter():
    fpn = rtseg.list_models("fpn_r18_*")
    assert fpn and all(n.startswith("fpn_r18_") for n in fpn)
    assert set(fpn) < set(rtseg.list_models("fpn_*")) < set(rtseg.list_models())
    assert rtseg.list_models("nothing*") == []
