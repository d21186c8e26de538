"""Boundary IoU and the per-image boundary F against plainly written per-pixel references and
hand-computed values (their use in evaluation: test_boundary_eval.py)."""

import math

import numpy as np
import pytest
import torch

from rtseg.errors import UsageError
from rtseg.inference.boundary import (
    BoundaryIoU,
    PerImageBoundaryFScore,
    boundary_iou_counts,
    boundary_width,
)

V = 255  # ignore


def t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


# ---------------------------------------------------------------- slow references


def _void_pred(pred: list[list[int]], target: list[list[int]]) -> list[list[int]]:
    return [[V if tv == V else pv for pv, tv in zip(pr, tr)] for pr, tr in zip(pred, target)]


def ref_band(lab: list[list[int]], c: int, d: int) -> set[tuple[int, int]]:
    """Pixels of class c with, within Chebyshev distance d, the outside of the image or a
    pixel of another (non-void) class."""
    h, w = len(lab), len(lab[0])
    band = set()
    for y in range(h):
        for x in range(w):
            if lab[y][x] != c:
                continue
            for yy in range(y - d, y + d + 1):
                for xx in range(x - d, x + d + 1):
                    outside = not (0 <= yy < h and 0 <= xx < w)
                    if outside or lab[yy][xx] not in (c, V):
                        band.add((y, x))
    return band


def ref_biou_counts(pred, target, k, ratio):
    pred = _void_pred(pred, target)
    h, w = len(target), len(target[0])
    d = max(1, round(ratio * math.sqrt(h * h + w * w)))
    inter, union = [0] * k, [0] * k
    for c in range(k):
        g, p = ref_band(target, c, d), ref_band(pred, c, d)
        inter[c], union[c] = len(g & p), len(g | p)
    return inter, union


def ref_contour(lab: list[list[int]], c: int) -> list[tuple[int, int]]:
    """Pixels of class c on the image border or with a 4-neighbour of another non-void class."""
    h, w = len(lab), len(lab[0])
    out = []
    for y in range(h):
        for x in range(w):
            if lab[y][x] != c:
                continue
            if y in (0, h - 1) or x in (0, w - 1):
                out.append((y, x))
                continue
            neighbours = [lab[y - 1][x], lab[y + 1][x], lab[y][x - 1], lab[y][x + 1]]
            if any(v not in (c, V) for v in neighbours):
                out.append((y, x))
    return out


def ref_per_image(pred, target, k, ratio):
    """{class: F} over the classes of the target with a boundary pixel, and their mean."""
    pred = _void_pred(pred, target)
    h, w = len(target), len(target[0])
    theta = ratio * math.sqrt(h * h + w * w)

    def matched(points, others):
        return sum(any((y - v) ** 2 + (x - u) ** 2 < theta**2 for v, u in others)
                   for y, x in points)

    scores = {}
    for c in range(k):
        if not any(c in row for row in target):
            continue
        pb, tb = ref_contour(pred, c), ref_contour(target, c)
        if not pb and not tb:
            continue
        p = matched(pb, tb) / len(pb) if pb else 0.0
        r = matched(tb, pb) / len(tb) if tb else 0.0
        scores[c] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return scores, (sum(scores.values()) / len(scores) if scores else math.nan)


# ---------------------------------------------------------------- hand-made 7×9 maps

TARGET = [  # 0 background, 1 a square, 2 an L, 3 a thin line, V void
    [V, 0, 0, 0, 0, 0, 0, 3, 0],
    [0, 1, 1, 1, 0, 0, 0, 3, 0],
    [0, 1, 1, 1, 0, 0, 0, 3, 0],
    [0, 1, 1, 1, 0, V, 0, 3, 0],
    [0, 0, 0, 0, 0, 2, 0, 3, 0],
    [0, 0, 0, 0, 0, 2, 0, 0, 0],
    [V, V, 0, 0, 0, 2, 2, 2, 2],
]
PRED = [  # the square one pixel lower and wider, the L thicker, the line cut and moved
    [2, 0, 0, 0, 0, 0, 0, 0, 3],
    [0, 0, 0, 0, 0, 0, 0, 0, 3],
    [0, 1, 1, 1, 1, 0, 0, 0, 3],
    [0, 1, 1, 1, 1, 0, 0, 0, 3],
    [0, 1, 1, 1, 1, 2, 2, 0, 0],
    [0, 0, 0, 0, 0, 2, 2, 0, 0],
    [1, 3, 0, 0, 0, 2, 2, 2, 2],
]


def _random_pair(seed: int, h: int = 12, w: int = 15, k: int = 4):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, k, (h // 3 + 1, w // 3 + 1), generator=g)
    target = coarse.repeat_interleave(3, 0).repeat_interleave(3, 1)[:h, :w].clone()
    target[torch.rand(h, w, generator=g) < 0.08] = V
    pred = torch.where(torch.rand(h, w, generator=g) < 0.8, target,
                       torch.randint(0, k, (h, w), generator=g))
    pred[pred == V] = 0
    return pred.tolist(), target.tolist()


CASES = [(PRED, TARGET), (TARGET, TARGET), _random_pair(0), _random_pair(1)]


@pytest.mark.parametrize("ratio", [0.02, 0.1, 0.2, 0.4])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_boundary_iou_matches_the_per_pixel_reference(case, ratio):
    pred, target = CASES[case]
    counts = boundary_iou_counts(t(pred), t(target), 4, ratio)
    inter, union = ref_biou_counts(pred, target, 4, ratio)
    assert counts.tolist() == [inter, union]


def test_boundary_iou_pools_counts_over_images():
    metric = BoundaryIoU(4, ratio=0.2)
    totals = np.zeros((2, 4))
    for pred, target in CASES:
        metric.update(t(pred), t(target))
        totals += np.array(ref_biou_counts(pred, target, 4, 0.2))
    r = metric.compute()
    want = [i / u if u else math.nan for i, u in zip(*totals, strict=True)]
    np.testing.assert_allclose(r["biou_per_class"], want)
    assert r["biou"] == pytest.approx(np.nanmean(want))
    assert r["biou_ratio"] == 0.2


def test_boundary_iou_hand_cases():
    # 4×4, d = max(1, round(0.1 · √32)) = 1: every pixel but the four inner ones touches the
    # border band. Target 0|1 at column 2, prediction at column 3. Class 0: G_d = 8 pixels;
    # P_d = 12 minus the inner (1,1), (2,1) = 10; both: 6 -> 6 / 12. Class 1: G_d = 8,
    # P_d = column 3 (4 pixels), both 4 -> 4 / 8.
    target = torch.zeros(4, 4, dtype=torch.int64)
    target[:, 2:] = 1
    pred = torch.zeros(4, 4, dtype=torch.int64)
    pred[:, 3:] = 1
    metric = BoundaryIoU(3, ratio=0.1)
    metric.update(pred, target)
    r = metric.compute()
    assert r["biou_per_class"][:2] == [0.5, 0.5] and math.isnan(r["biou_per_class"][2])
    assert r["biou"] == 0.5
    # One row: every pixel touches the border, so Boundary IoU is the plain IoU of the valid
    # pixels (pixel 4 is void): class 0 {0,1} vs {0,3}: 1/3; class 1 {2,3} vs {1,2}: 1/3;
    # class 2 {5} vs {5, 6}: 1/2.
    r = BoundaryIoU(3, ratio=0.02)
    r.update(t([[0, 1, 1, 0, 1, 2, 2]]), t([[0, 0, 1, 1, V, 2, 1]]))
    assert r.compute()["biou_per_class"] == pytest.approx([1 / 3, 1 / 4, 1 / 2])


def test_boundary_width_follows_the_reference_rounding():
    assert boundary_width(720, 960, 0.02) == 24  # 0.02 · 1200
    assert boundary_width(1024, 2048, 0.02) == 46  # 45.8
    assert boundary_width(10, 10, 0.02) == 1  # 0.28, at least one pixel
    assert boundary_width(3, 4, 0.5) == 2  # 2.5: Python's round, half to even
    for bad in (-0.1, 0, math.nan, math.inf, "0.02"):
        with pytest.raises(UsageError, match="must be a finite number > 0"):
            boundary_width(3, 4, bad)
    with pytest.raises(ValueError, match="ratio must be a finite number > 0"):
        BoundaryIoU(3, ratio=-0.02)


def test_boundary_iou_void_is_neutral_and_never_counted():
    # Void between the classes: no contour there, whatever is predicted under the void.
    target = torch.full((9, 12), V, dtype=torch.int64)
    target[:, :5] = 0
    target[:, 7:] = 1
    pred = torch.randint(0, 2, (9, 12))
    pred[:, :5], pred[:, 7:] = 0, 1
    # d = round(0.1 · 15) = 2: each class's band is its 45 pixels but the 5×3 away from the
    # border (the void beside it hides nothing and shows nothing).
    ratio = 0.1
    assert boundary_iou_counts(pred, target, 2, ratio).tolist() == [[30, 30], [30, 30]]
    # A wrong pixel inside class 0 (in its border band) adds to class 1's union, and makes
    # the 5×2 inner class-0 pixels within 2 of it a predicted contour: class 0 shares 29 of
    # 30 + 39 - 29.
    pred[4, 1] = 1
    assert boundary_iou_counts(pred, target, 2, ratio).tolist() == [[29, 30], [40, 31]]


# ---------------------------------------------------------------- per-image boundary F


@pytest.mark.parametrize("ratio", [0.05, 0.12, 0.2, 0.3])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_per_image_bf_matches_the_per_pixel_reference(case, ratio):
    pred, target = CASES[case]
    metric = PerImageBoundaryFScore(4, ratio)
    metric.update(t(pred), t(target))
    r = metric.compute()
    scores, mean = ref_per_image(pred, target, 4, ratio)
    assert r["mbf"] == pytest.approx(mean)
    for c in range(4):
        if c in scores:
            assert r["bf"][c] == pytest.approx(scores[c])
        else:
            assert math.isnan(r["bf"][c])


def test_per_image_bf_averages_images_then_classes_per_image():
    metric = PerImageBoundaryFScore(4, 0.2)
    per_image, per_class = [], {c: [] for c in range(4)}
    for pred, target in CASES:
        metric.update(t(pred), t(target))
        scores, mean = ref_per_image(pred, target, 4, 0.2)
        per_image.append(mean)
        for c, f in scores.items():
            per_class[c].append(f)
    r = metric.compute()
    assert r["mbf"] == pytest.approx(np.mean(per_image)) and r["bf_images"] == 4
    assert r["bf"] == pytest.approx([np.mean(per_class[c]) for c in range(4)])
    batched = PerImageBoundaryFScore(4, 0.2)
    batched.update(torch.stack([t(CASES[2][0]), t(CASES[3][0])]),
                   torch.stack([t(CASES[2][1]), t(CASES[3][1])]))
    assert batched.compute()["mbf"] == pytest.approx(np.mean(per_image[2:]))


def test_per_image_bf_hand_cases():
    # 4×6, target 0|1 between columns 2 and 3, prediction between 3 and 4. θ = 0.1 · √52 =
    # 0.72: only exact positions match. Class 0: contour 10 true, 12 predicted, 8 shared:
    # P = 2/3, R = 4/5, F = 8/11; class 1: 10 true, 8 predicted, 6 shared: P = 3/4,
    # R = 3/5, F = 2/3. The image: (8/11 + 2/3) / 2 = 23/33.
    target = torch.zeros(4, 6, dtype=torch.int64)
    target[:, 3:] = 1
    pred = torch.zeros(4, 6, dtype=torch.int64)
    pred[:, 4:] = 1
    metric = PerImageBoundaryFScore(3, ratio=0.1)
    metric.update(pred, target)
    r = metric.compute()
    assert r["bf"][:2] == pytest.approx([8 / 11, 2 / 3]) and math.isnan(r["bf"][2])
    assert r["bf_precision"][:2] == pytest.approx([2 / 3, 3 / 4])
    assert r["bf_recall"][:2] == pytest.approx([4 / 5, 3 / 5])
    assert r["mbf"] == pytest.approx(23 / 33)
    # θ = 1.44: the one-column shift is within tolerance everywhere.
    metric = PerImageBoundaryFScore(3, ratio=0.2)
    metric.update(pred, target)
    assert metric.compute()["mbf"] == 1.0
    # A class of the target that is not predicted scores 0 and counts; a class predicted
    # only (2) is left out of the image's mean. Prediction: all 0 but one class-2 pixel.
    # Class 0: predicted contour = the border ring (16) + (1,3), (2,4) around the 2 = 18,
    # 8 of them on the true contour (10): P = 4/9, R = 4/5, F = 4/7. Image: (4/7 + 0) / 2.
    pred = torch.zeros(4, 6, dtype=torch.int64)
    pred[1, 4] = 2
    metric = PerImageBoundaryFScore(3, ratio=0.1)
    metric.update(pred, target)
    r = metric.compute()
    assert r["bf"][:2] == pytest.approx([4 / 7, 0.0]) and math.isnan(r["bf"][2])
    assert r["mbf"] == pytest.approx(2 / 7)


def test_per_image_bf_uses_euclidean_distance():
    # One true contour pixel class 1 at (3,3) in a 7×7 image of 0 (its own contour is the
    # pixel); predicted at (4,4): √2 away, (5,4): √5 away.
    target = torch.zeros(7, 7, dtype=torch.int64)
    target[3, 3] = 1
    diag = math.sqrt(98)
    for spot, theta, matched in [((4, 4), 1.5, True), ((4, 4), 1.4, False),
                                 ((5, 4), 2.3, True), ((5, 4), 2.2, False)]:
        pred = torch.zeros(7, 7, dtype=torch.int64)
        pred[spot] = 1
        metric = PerImageBoundaryFScore(2, ratio=theta / diag)
        metric.update(pred, target)
        assert metric.compute()["bf"][1] == (1.0 if matched else 0.0), (spot, theta)
    # The match is strict (distance < θ, as MATLAB's): 12×16 has diagonal 20, so θ = 0.25 ·
    # 20 = 5 exactly; (2,2) to (5,6) is 5 away, to (5,5) √18.
    target = torch.zeros(12, 16, dtype=torch.int64)
    target[2, 2] = 1
    for spot, matched in [((5, 6), False), ((5, 5), True), ((7, 2), False), ((6, 2), True)]:
        pred = torch.zeros(12, 16, dtype=torch.int64)
        pred[spot] = 1
        metric = PerImageBoundaryFScore(2, ratio=0.25)
        metric.update(pred, target)
        assert metric.compute()["bf"][1] == (1.0 if matched else 0.0), spot


def test_per_image_bf_void_is_neutral():
    target = torch.full((4, 8), V, dtype=torch.int64)
    target[:, :3], target[:, 5:] = 0, 1
    pred = torch.randint(0, 3, (4, 8))
    pred[:, :3], pred[:, 5:] = 0, 1  # anything under the void
    metric = PerImageBoundaryFScore(3, ratio=0.01)  # exact positions only
    metric.update(pred, target)
    r = metric.compute()
    assert r["mbf"] == 1.0 and r["bf"][:2] == [1.0, 1.0] and math.isnan(r["bf"][2])
    empty = PerImageBoundaryFScore(3)
    empty.update(torch.zeros(3, 3, dtype=torch.int64), torch.full((3, 3), V))
    assert math.isnan(empty.compute()["mbf"]) and empty.compute()["bf_images"] == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_boundary_metrics_on_cuda():
    pred = torch.stack([t(p) for p, _ in CASES])
    target = torch.stack([t(tg) for _, tg in CASES])
    for make in (lambda: BoundaryIoU(4, 0.1), lambda: PerImageBoundaryFScore(4, 0.2)):
        cpu, gpu = make(), make()
        cpu.update(pred, target)
        gpu.update(pred.cuda(), target.cuda())
        want, got = cpu.compute(), gpu.compute()
        assert want.keys() == got.keys()
        for key, value in want.items():
            if isinstance(value, str):
                assert got[key] == value
            else:
                np.testing.assert_allclose(got[key], value, equal_nan=True)
