"""Starting from another run (init_from), freezing parts (freeze), TensorBoard logging."""

import json

import pytest
import torch

from rtseg import create_model
from rtseg.errors import ConfigError
from rtseg.training import weights
from rtseg.training.checkpoint import load_checkpoint
from rtseg.training.config import make_config
from rtseg.training.trainer import run_training as train

TINY = dict(model="fpn_r18_bilinear", dataset="synthetic", crop_size=[32, 48],
            dataset_kwargs={"size": [32, 48], "num_images": dict(train=8, val=2, test=2)},
            batch_size=4,
            iters=2, eval_interval=2, ckpt_interval=2, log_interval=1, workers=0, lr=0.05)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("src")
    return train(make_config({**TINY, "out_dir": str(out), "run_name": "src"})) / "last.pt"


def test_init_from_copies_matching_tensors_and_names_the_rest(source):
    src = load_checkpoint(source)["model"]
    model = create_model("fpn_r18_gai", 8, channels=64)
    report = weights.init_from(model, source)
    state = model.state_dict()
    assert report["copied"] and all(torch.equal(state[k], src[k]) for k in report["copied"])
    assert {k.split(".")[0] for k in report["copied"]} >= {"backbone"}
    assert all(k.startswith("backbone.") for k in state if k.startswith("backbone."))
    assert sum(k.startswith("backbone.") for k in report["copied"]) == sum(
        k.startswith("backbone.") for k in state)
    # the 64-wide laterals cannot take the 128-wide ones: both shapes named
    lateral = [s for s in report["skipped"] if s.startswith("lateral.0.conv.weight")]
    assert lateral == ["lateral.0.conv.weight (shape (128, 64, 1, 1) in the checkpoint, "
                       "(64, 64, 1, 1) here)"]
    assert any("top_down.0." in s and "not in the checkpoint" in s for s in report["skipped"])
    assert any(k.startswith("top_down.0.") for k in report["unused"])  # bilinear's own
    text = weights.summarize(report, source)
    assert "backbone:" in text and "lateral.0.conv.weight (shape" in text


def test_frozen_backbone_is_bit_identical_after_training(source, tmp_path):
    before = load_checkpoint(source)["model"]
    run = train(make_config({**TINY, "model": "fpn_r18_gai", "init_from": str(source),
                             "freeze": "backbone", "out_dir": str(tmp_path), "run_name": "f"}))
    after = load_checkpoint(run / "last.pt")["model"]
    backbone = [k for k in after if k.startswith("backbone.")]
    assert backbone and all(torch.equal(after[k], before[k]) for k in backbone)  # BN stats too
    assert any(k.endswith("running_mean") for k in backbone)
    head = [k for k in after if k.startswith("head.") and k.endswith("weight")]
    assert any(not torch.equal(after[k], before[k]) for k in head if k in before)
    report = json.loads((run / "init_from.json").read_text())
    assert len(report["copied"]) > len(backbone) - 1


def test_init_parts_limits_the_copy_to_the_backbone(source):
    src = load_checkpoint(source)["model"]
    model = create_model("fpn_r18_bilinear", 8)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = weights.init_from(model, source, parts="backbone")
    state = model.state_dict()
    assert report["copied"] and all(k.startswith("backbone.") for k in report["copied"])
    assert all(torch.equal(state[k], src[k]) for k in report["copied"])
    assert all(torch.equal(state[k], fresh[k]) for k in state if k.startswith("head."))
    assert "head.2.weight (not in init_parts)" in report["skipped"]
    with pytest.raises(ConfigError, match="no part 'neck'"):
        weights.init_from(model, source, parts="neck")


def test_frozen_part_records_no_graph_and_stays_in_eval_mode():
    model = create_model("fpn_r18_bilinear", 4)
    assert weights.freeze(model, "backbone") == ["backbone"]
    model.train()
    feats = model.backbone(torch.randn(2, 3, 32, 32))
    assert not any(f.requires_grad for f in feats)  # nothing recorded: no backward through it
    bn = model.backbone.bn1
    assert bn.training is False  # the forward pre-hook puts it back after model.train()
    logits, aux = model(torch.randn(2, 3, 32, 32))
    logits.sum().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    assert weights.trainable(model) == sum(p.numel() for n, p in model.named_parameters()
                                           if not n.startswith("backbone."))


def test_freeze_of_an_unknown_part_fails_before_the_run_folder(tmp_path):
    with pytest.raises(ConfigError, match="no part 'encoder'; its parts: backbone, lateral"):
        train(make_config({**TINY, "freeze": "encoder", "out_dir": str(tmp_path),
                           "run_name": "x"}))
    assert not (tmp_path / "x").exists()


def test_tensorboard_scalars_beside_the_json_log(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is an optional extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train(make_config({**TINY, "tensorboard": True, "out_dir": str(tmp_path),
                             "run_name": "tb"}))
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx(losses)
    assert [e.step for e in acc.Scalars("val/miou")] == [2]
