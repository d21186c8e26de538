import copy
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rtseg.inference.metrics import BoundaryFScore, ConfusionMatrix, boundary_fscore, format_metrics

IGNORE = 255


def t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


# ---------------------------------------------------------------- confusion matrix / IoU


def _small_case() -> tuple[torch.Tensor, torch.Tensor]:
    # (true, pred) over valid pixels: (0,0) (0,1) (1,1) (1,1) (1,0); the last pixel is ignore
    # and its prediction (class 2) must not count. Classes 2 and 3 are absent.
    target = t([[0, 0, 1], [1, 1, IGNORE]])
    pred = t([[0, 1, 1], [1, 0, 2]])
    return pred, target


def test_confusion_matrix_hand_case():
    pred, target = _small_case()
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    expected = torch.zeros(4, 4, dtype=torch.int64)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[1, 0] = 1, 1, 2, 1
    assert torch.equal(cm.mat, expected)

    r = cm.compute()
    # class 0: TP 1, FN 1, FP 1 -> 1/3; class 1: TP 2, FN 1, FP 1 -> 2/4.
    assert r["iou"][0] == pytest.approx(1 / 3)
    assert r["iou"][1] == pytest.approx(1 / 2)
    assert math.isnan(r["iou"][2]) and math.isnan(r["iou"][3])
    assert r["miou"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert r["pixel_acc"] == pytest.approx(3 / 5)
    assert r["mean_acc"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_confusion_matrix_predicted_only_class_scores_zero():
    cm = ConfusionMatrix(3)
    cm.update(t([[0, 2]]), t([[0, 0]]))
    r = cm.compute()
    assert r["iou"][0] == pytest.approx(1 / 2)
    assert r["iou"][2] == 0.0  # only predicted: in the mean with IoU 0
    assert math.isnan(r["iou"][1])
    assert r["miou"] == pytest.approx(1 / 4)
    assert math.isnan(r["class_acc"][2])  # absent from the target: not in mean_acc
    assert r["mean_acc"] == pytest.approx(1 / 2)


def test_confusion_matrix_accumulates_batched_and_2d():
    pred, target = _small_case()
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    cm.update(torch.stack([pred, pred]), torch.stack([target, target]))
    assert int(cm.mat.sum()) == 15
    assert int(cm.mat[1, 1]) == 6
    cm.reset()
    assert int(cm.mat.sum()) == 0
    assert math.isnan(cm.compute()["pixel_acc"])


def test_confusion_matrix_rejects_bad_labels():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="outside"):
        cm.update(t([[0, 1]]), t([[0, 3]]))
    with pytest.raises(ValueError, match="outside"):
        cm.update(t([[0, 5]]), t([[0, 1]]))
    with pytest.raises(ValueError):
        cm.update(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int64))
    cm.update(t([[0, 7]]), t([[0, IGNORE]]))  # anything goes under an ignore pixel
    assert int(cm.mat.sum()) == 1


def test_miou_matches_cityscapesscripts(tmp_path):
    ev = pytest.importorskip(
        "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling",
        reason="cityscapesscripts is not installed",
    )
    from cityscapesscripts.helpers.labels import trainId2label
    from PIL import Image

    rng = np.random.default_rng(0)
    num_classes = 19
    train_to_id = np.zeros(256, dtype=np.uint8)  # ignore (255) -> id 0 'unlabeled'
    for train_id in range(num_classes):
        train_to_id[train_id] = trainId2label[train_id].id

    cm = ConfusionMatrix(num_classes)
    pred_files, gt_files = [], []
    for i in range(3):
        target = rng.integers(0, num_classes, size=(24, 40))
        target[target == 5] = 6  # class 5 absent from both maps: NaN in both evaluations
        target[rng.random(target.shape) < 0.1] = IGNORE
        pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, 19, target.shape))
        pred[(pred == IGNORE) | (pred == 5)] = 0
        cm.update(torch.from_numpy(pred), torch.from_numpy(target))
        pred_files.append(str(tmp_path / f"img{i}_pred.png"))
        gt_files.append(str(tmp_path / f"img{i}_gtFine_labelIds.png"))
        Image.fromarray(train_to_id[pred]).save(pred_files[-1])
        Image.fromarray(train_to_id[target]).save(gt_files[-1])

    args = copy.copy(ev.args)
    args.quiet = True
    args.JSONOutput = False
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    reference = ev.evaluateImgLists(pred_files, gt_files, args)

    ours = cm.compute()
    assert ours["miou"] == pytest.approx(reference["averageScoreClasses"], abs=1e-12)
    for train_id in range(num_classes):
        ref = reference["classScores"][trainId2label[train_id].name]
        if math.isnan(ref):
            assert math.isnan(ours["iou"][train_id])
        else:
            assert ours["iou"][train_id] == pytest.approx(ref, abs=1e-12)
    assert math.isnan(ours["iou"][5])


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        cm = ConfusionMatrix(3)
        bf = BoundaryFScore(3, tolerance=0)
        if rank == 0:
            pred, target = t([[0, 1]]), t([[0, 1]])
        else:
            pred, target = t([[2, 0, 0]]), t([[2, 2, IGNORE]])
        cm.update(pred, target)
        bf.update(pred, target)
        cm.reduce()
        bf.reduce()
        torch.save({"mat": cm.mat, "bf": bf.counts}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_reduce_sums_over_ddp_ranks(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    expected = torch.zeros(3, 3, dtype=torch.int64)
    expected[0, 0] = 1  # rank 0
    expected[1, 1] = 1  # rank 0
    expected[2, 2] = 1  # rank 1
    expected[2, 0] = 1  # rank 1 (its third pixel is ignore)
    # Boundary pixels: rank 0 has a 0|1 edge in both maps (classes 0 and 1, matched);
    # rank 1's prediction has a 2|0 edge (classes 2 and 0, unmatched), its target none.
    expected_bf = t([[1, 1, 0], [2, 1, 1], [1, 1, 0], [1, 1, 0]])
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.equal(out["mat"], expected)
        assert torch.equal(out["bf"], expected_bf)


# ---------------------------------------------------------------- boundary F-score


def test_boundary_identical_maps_score_one():
    torch.manual_seed(0)
    target = torch.randint(0, 4, (2, 16, 16))
    target[:, :3, :3] = IGNORE
    r = boundary_fscore(target.clone(), target, num_classes=5, tolerance=0)
    assert r["mbf"] == 1.0
    assert r["bf"][:4] == [1.0] * 4
    assert math.isnan(r["bf"][4])


def _halves(split: int) -> torch.Tensor:
    m = torch.zeros(6, 10, dtype=torch.int64)
    m[:, split:] = 1
    return m


def test_boundary_one_pixel_shift():
    target, pred = _halves(5), _halves(6)
    assert boundary_fscore(pred, target, 2, tolerance=2)["mbf"] == 1.0
    assert boundary_fscore(pred, target, 2, tolerance=1)["mbf"] == 1.0
    # Exact matching: class 0's edge is column 4 vs 5, class 1's column 5 vs 6.
    assert boundary_fscore(pred, target, 2, tolerance=0)["mbf"] == 0.0


def test_boundary_hand_case_1d():
    target = t([[0, 0, 0, 1, 1, 1, 1, 1]])  # class 0 edge {2}, class 1 edge {3}
    pred = t([[0, 1, 1, 1, 0, 0, 1, 1]])  # class 0 edges {0, 4, 5}, class 1 edges {1, 3, 6}
    r = boundary_fscore(pred, target, 2, tolerance=1)
    # class 0: no predicted edge within 1 of 2, and 2 is 2 away from 0 and 4: P = R = 0.
    # class 1: predicted 3 matches (P = 1/3), the true edge 3 is found (R = 1): F = 1/2.
    assert r["bf"] == pytest.approx([0.0, 0.5])
    assert r["bf_precision"] == pytest.approx([0.0, 1 / 3])
    assert r["bf_recall"] == pytest.approx([0.0, 1.0])
    assert r["mbf"] == pytest.approx(0.25)
    r = boundary_fscore(pred, target, 2, tolerance=2)
    # class 0: predicted 0 and 4 within 2 of 2 (P = 2/3, R = 1); class 1: 1 and 3 (same).
    assert r["bf"] == pytest.approx([0.8, 0.8])


def test_boundary_uses_chebyshev_distance():
    target = torch.zeros(5, 5, dtype=torch.int64)
    target[0, 0] = 1  # class 1 edge {(0,0)}, class 0 edge {(0,1), (1,0)}
    pred = torch.zeros(5, 5, dtype=torch.int64)
    pred[2, 2] = 1  # class 1 edge {(2,2)}, class 0 edge {(1,2), (3,2), (2,1), (2,3)}
    # (2,2) is 2 away from (0,0) diagonally; every class-0 edge pixel is within 2 of a true one.
    assert boundary_fscore(pred, target, 2, tolerance=2)["bf"] == [1.0, 1.0]
    r = boundary_fscore(pred, target, 2, tolerance=1)
    # class 1: unmatched. class 0: (1,2) and (2,1) match, (3,2), (2,3) don't: P = 1/2, R = 1.
    assert r["bf"] == pytest.approx([2 / 3, 0.0])
    assert r["mbf"] == pytest.approx(1 / 3)


def test_boundary_ignore_handling():
    # Two classes separated by void: no boundary anywhere, whatever the prediction does there.
    r = boundary_fscore(t([[0, 0, 0, 1, 1, 1]]), t([[0, 0, IGNORE, IGNORE, 1, 1]]), 2, 0)
    assert math.isnan(r["mbf"]) and all(math.isnan(v) for v in r["bf"])
    # The 1|void side is not a boundary; the prediction's edges inside the void are dropped.
    target = t([[0, 0, 1, 1, IGNORE, IGNORE]])  # edges: class 0 {1}, class 1 {2}
    pred = t([[0, 0, 1, 0, 1, 0]])  # after voiding: class 0 {1, 3}, class 1 {2}
    r = boundary_fscore(pred, target, 2, tolerance=0)
    assert r["bf_precision"] == pytest.approx([0.5, 1.0])
    assert r["bf_recall"] == pytest.approx([1.0, 1.0])
    assert r["bf"] == pytest.approx([2 / 3, 1.0])


def test_boundary_pools_counts_over_images():
    pred_a, target_a = t([[0, 1, 1, 1, 0, 0, 1, 1]]), t([[0, 0, 0, 1, 1, 1, 1, 1]])
    pred_b, target_b = target_a.clone(), target_a.clone()
    bf = BoundaryFScore(2, tolerance=1)
    bf.update(pred_a, target_a)
    bf.update(pred_b, target_b)
    r = bf.compute()
    # class 0: P = (0 + 1) / (3 + 1), R = (0 + 1) / (1 + 1) -> F = 1/3
    # class 1: P = (1 + 1) / (3 + 1), R = 2 / 2 -> F = 2/3   (per-image mean would be 0.75)
    assert r["bf"] == pytest.approx([1 / 3, 2 / 3])
    assert r["mbf"] == pytest.approx(0.5)
    batched = boundary_fscore(
        torch.stack([pred_a, pred_b]), torch.stack([target_a, target_b]), 2, tolerance=1
    )
    assert batched["bf"] == pytest.approx(r["bf"])
    bf.reset()
    assert math.isnan(bf.compute()["mbf"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_cuda():
    torch.manual_seed(0)
    target = torch.randint(0, 5, (2, 40, 50))
    target[:, :4] = IGNORE
    pred = torch.where(torch.rand(target.shape) < 0.7, target, torch.randint(0, 5, target.shape))
    pred[:, :4] = 0
    cm_cpu, cm_gpu = ConfusionMatrix(5), ConfusionMatrix(5)
    cm_cpu.update(pred, target)
    cm_gpu.update(pred.cuda(), target.cuda())
    assert cm_gpu.mat.is_cuda
    assert torch.equal(cm_gpu.mat.cpu(), cm_cpu.mat)
    bf_cpu, bf_gpu = BoundaryFScore(5), BoundaryFScore(5)
    bf_cpu.update(pred, target)
    bf_gpu.update(pred.cuda(), target.cuda())
    assert bf_gpu.counts.is_cuda
    assert torch.equal(bf_gpu.counts.cpu(), bf_cpu.counts)


# ---------------------------------------------------------------- table


def test_format_table():
    pred, target = _small_case()
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    bf = BoundaryFScore(4, tolerance=0)
    bf.update(pred, target)
    text = format_metrics({**cm.compute(), **bf.compute()}, ["road", "car", "sky", "bus"])
    lines = text.splitlines()
    assert "IoU" in lines[0] and "BF@0px" in lines[0]
    car = next(line for line in lines if line.startswith("car"))
    assert "50.0" in car
    sky = next(line for line in lines if line.startswith("sky"))
    assert "-" in sky and "nan" not in text
    mean = next(line for line in lines if line.startswith("mean"))
    assert "41.7" in mean  # (1/3 + 1/2) / 2
    assert "pixel acc 60.0" in text
    with pytest.raises(ValueError):
        format_metrics(cm.compute(), ["road", "car"])
