"""Boundary IoU and the per-image boundary F in the results: the table's columns,
evaluate_dataset's and rtseg.evaluate's options, and ``rtseg eval``'s, to the JSON it writes."""

import json

import pytest
import torch
from torch import nn

import rtseg
from rtseg.cli import main
from rtseg.data import Synthetic
from rtseg.data.transforms import eval_transforms
from rtseg.errors import UsageError
from rtseg.inference.boundary import BoundaryIoU, PerImageBoundaryFScore
from rtseg.inference.evaluate import evaluate_dataset
from rtseg.inference.metrics import BoundaryFScore, ConfusionMatrix, format_metrics
from rtseg.inference.tta import predict_probs


def test_format_metrics_shows_the_protocol_and_boundary_iou():
    target = torch.zeros(7, 9, dtype=torch.int64)
    target[1:4, 1:4], target[4:, 5], target[6, 5:] = 1, 2, 2  # a square and an L
    target[:5, 7] = 3  # a thin line
    pred = torch.roll(target, 1, 0)
    cm, biou, per_image = ConfusionMatrix(4), BoundaryIoU(4, 0.05), PerImageBoundaryFScore(4)
    for m in (cm, biou, per_image):
        m.update(pred, target)
    text = format_metrics({**cm.compute(), **per_image.compute(), **biou.compute()},
                          ["bg", "square", "L", "line"])
    header = text.splitlines()[0]
    assert "IoU" in header and "BF@0.75%diag" in header and "BIoU@5%diag" in header
    square = biou.compute()["biou_per_class"][1]
    assert f"{100 * square:.1f}" in next(r for r in text.splitlines() if r.startswith("square"))
    pooled = BoundaryFScore(4, tolerance=1)
    pooled.update(pred, target)
    assert "BF@1px" in format_metrics({**cm.compute(), **pooled.compute()}, list("abcd"))


def _tiny_data():
    return Synthetic("test", num_images={"test": 2}, size=(24, 32), transform=eval_transforms())


def test_evaluate_dataset_adds_the_chosen_boundary_scores():
    torch.manual_seed(0)
    model = nn.Conv2d(3, 8, 1).eval()
    ds = _tiny_data()
    preds, targets = [], []
    for i in range(len(ds)):
        image, label = ds[(i, 0)]
        preds.append(predict_probs(model, image[None]).argmax(1))
        targets.append(label[None])
    biou, per_image = BoundaryIoU(8, 0.05), PerImageBoundaryFScore(8, 0.02)
    for p, tg in zip(preds, targets, strict=True):
        biou.update(p, tg)
        per_image.update(p, tg)

    default = evaluate_dataset(model, ds, progress=False)
    assert default["bf_protocol"] == "pooled" and default["bf_tolerance"] == 2
    assert "biou" not in default  # off unless asked (training's evaluation stays as it was)
    res = evaluate_dataset(model, ds, progress=False, boundary="per_image", bf_ratio=0.02,
                           biou_ratio=0.05)
    assert res["bf_protocol"] == "per_image" and res["bf_ratio"] == 0.02
    assert res["mbf"] == pytest.approx(per_image.compute()["mbf"])
    assert res["biou"] == pytest.approx(biou.compute()["biou"]) and res["biou_ratio"] == 0.05
    assert res["miou"] == default["miou"]
    with pytest.raises(UsageError, match="unknown boundary F protocol 'pixel'"):
        evaluate_dataset(model, ds, progress=False, boundary="pixel")
    with pytest.raises(UsageError, match="biou_ratio must be a finite number > 0"):
        rtseg.evaluate(model, data=ds, biou_ratio=-0.02, device="cpu", progress=False)
    res = rtseg.evaluate(model, data=ds, device="cpu", progress=False)
    assert res["biou_ratio"] == 0.02 and len(res["biou_per_class"]) == 8  # on by default


def test_eval_command_passes_the_boundary_options(tmp_path, capsys):
    from rtseg.registry import create_model

    model = create_model("fpn_r18_bilinear", 8, aux=True)
    ckpt = tmp_path / "tiny.pt"
    torch.save({"model": model.state_dict(), "num_classes": 8,
                "config": {"model": "fpn_r18_bilinear", "dataset": "synthetic",
                           "dataset_kwargs": {"size": [24, 32], "num_images": {"test": 1}}}},
               ckpt)
    out = tmp_path / "m.json"
    assert main(["eval", str(ckpt), "--split", "test", "--device", "cpu", "--json", str(out),
                 "--bf-protocol", "per_image", "--bf-ratio", "0.05",
                 "--biou-ratio", "0.1"]) == 0
    printed = capsys.readouterr().out
    assert "BF@5%diag" in printed and "BIoU@10%diag" in printed
    assert "per image, tolerance 5 % of the diagonal" in printed and "boundary IoU" in printed
    res = json.loads(out.read_text())
    assert res["bf_protocol"] == "per_image" and res["bf_ratio"] == 0.05
    assert res["biou_ratio"] == 0.1 and len(res["biou_per_class"]) == 8
    assert 0 <= res["biou"] <= 1 and 0 <= res["mbf"] <= 1
