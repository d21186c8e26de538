import math

import pytest
import torch

from rtseg.losses import OhemCrossEntropy, SegLoss, build_loss, cross_entropy

IGNORE = 255
# True-class probabilities of 10 pixels of a 1×2×5 batch (pixel 9 is relabelled ignore below).
PROBS = [0.10, 0.95, 0.50, 0.80, 0.65, 0.99, 0.30, 0.90, 0.60, 0.01]


def _two_class_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax gives PROBS for the target class 0; pixel 9 ignored."""
    p = torch.tensor(PROBS, dtype=torch.float64)
    logits = torch.stack([p.log(), (1 - p).log()]).view(1, 2, 2, 5)
    target = torch.zeros(1, 2, 5, dtype=torch.int64)
    target.view(-1)[9] = IGNORE
    return logits, target


def _expected_loss(indices: list[int]) -> float:
    return sum(-math.log(PROBS[i]) for i in indices) / len(indices)


def test_cross_entropy_matches_hand_value_and_ignores():
    logits, target = _two_class_case()
    loss = cross_entropy(logits, target)
    assert loss.item() == pytest.approx(_expected_loss(list(range(9))))


def test_cross_entropy_all_ignored_is_zero_with_grad():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), IGNORE)
    loss = cross_entropy(logits, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)


def test_cross_entropy_shape_mismatch_raises():
    with pytest.raises(ValueError, match="label size"):
        cross_entropy(torch.randn(1, 3, 4, 4), torch.zeros(1, 8, 8, dtype=torch.int64))


def test_ohem_keeps_hard_pixels_when_enough():
    logits, target = _two_class_case()
    ohem = OhemCrossEntropy(thresh=0.7, min_kept=3)
    kept = ohem.kept_mask(logits, target).view(-1).tolist()
    # p < 0.7 among the valid pixels 0..8: 0.10, 0.50, 0.65, 0.30, 0.60.
    hard = [0, 2, 4, 6, 8]
    assert kept == [i in hard for i in range(10)]
    assert ohem(logits, target).item() == pytest.approx(_expected_loss(hard))


def test_ohem_tops_up_to_min_kept_with_hardest():
    logits, target = _two_class_case()
    ohem = OhemCrossEntropy(thresh=0.7, min_kept=8)
    kept = ohem.kept_mask(logits, target).view(-1).tolist()
    # The 5 hard pixels plus the next hardest valid ones: 0.80 (3), 0.90 (7), 0.95 (1).
    # Pixel 9 (p = 0.01, the hardest of all) is ignore and never kept.
    expected = [0, 1, 2, 3, 4, 6, 7, 8]
    assert kept == [i in expected for i in range(10)]
    assert ohem(logits, target).item() == pytest.approx(_expected_loss(expected))


def test_ohem_min_kept_above_valid_count_keeps_all_valid():
    logits, target = _two_class_case()
    kept = OhemCrossEntropy(thresh=0.7, min_kept=50).kept_mask(logits, target)
    assert kept.view(-1).tolist() == [True] * 9 + [False]


def test_ohem_min_kept_counts_over_the_batch():
    logits, target = _two_class_case()
    batch_logits = torch.cat([logits, logits])
    batch_target = torch.cat([target, target])
    # 5 hard pixels per image, 10 in the batch: min_kept=10 needs no top-up.
    kept = OhemCrossEntropy(thresh=0.7, min_kept=10).kept_mask(batch_logits, batch_target)
    assert int(kept.sum()) == 10
    kept = OhemCrossEntropy(thresh=0.7, min_kept=12).kept_mask(batch_logits, batch_target)
    assert int(kept.sum()) == 12


def test_ohem_gradient_only_through_kept_pixels():
    logits, target = _two_class_case()
    logits = logits.clone().requires_grad_(True)
    OhemCrossEntropy(thresh=0.7, min_kept=3)(logits, target).backward()
    has_grad = (logits.grad.abs().sum(1) > 0).view(-1).tolist()
    assert has_grad == [i in (0, 2, 4, 6, 8) for i in range(10)]


def test_segloss_total_and_parts():
    torch.manual_seed(0)
    target = torch.randint(0, 4, (2, 6, 6))
    main, a1, a2 = (torch.randn(2, 4, 6, 6) for _ in range(3))
    loss = SegLoss(cross_entropy, aux_weights=[0.4, 0.25])
    total, parts = loss((main, [a1, a2]), target)
    ce = [torch.nn.functional.cross_entropy(t, target).item() for t in (main, a1, a2)]
    assert total.item() == pytest.approx(ce[0] + 0.4 * ce[1] + 0.25 * ce[2], rel=1e-5)
    assert set(parts) == {"main", "aux1", "aux2"}
    assert parts["aux2"].item() == pytest.approx(ce[2], rel=1e-5)
    assert not parts["main"].requires_grad

    total, parts = loss(main, target)  # eval-style: main loss only
    assert total.item() == pytest.approx(ce[0], rel=1e-5)
    assert set(parts) == {"main"}


def test_segloss_aux_count_mismatch_raises():
    target = torch.zeros(1, 4, 4, dtype=torch.int64)
    x = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match="auxiliary outputs"):
        SegLoss(cross_entropy, aux_weights=[0.4])((x, [x, x]), target)


def test_build_loss():
    logits, target = _two_class_case()
    assert build_loss("ce", [])(logits, target)[0].item() == pytest.approx(
        _expected_loss(list(range(9)))
    )
    ohem = build_loss("ohem", [0.5], thresh=0.7, min_kept=3)
    total, _ = ohem((logits, [logits]), target)
    assert total.item() == pytest.approx(1.5 * _expected_loss([0, 2, 4, 6, 8]))
    # ignore_index is forwarded: pixel 0 (class 0) becomes the ignored one.
    relabelled = target.clone()
    relabelled.view(-1)[9] = 0
    relabelled.view(-1)[0] = 7
    total, _ = build_loss("ce", [], ignore_index=7)(logits, relabelled)
    assert total.item() == pytest.approx(_expected_loss(list(range(1, 10))))
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("focal", [])
    with pytest.raises(TypeError):
        build_loss("ce", [], thresh=0.7)
