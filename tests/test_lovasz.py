"""Lovász-softmax against the definition: the Lovász extension of the Jaccard set function,
evaluated prefix set by prefix set, and 1 − IoU on hard predictions."""

import pytest
import torch

from rtseg.errors import ConfigError
from rtseg.losses import build_loss, lovasz_softmax
from rtseg.training.config import make_config


def reference(logits: torch.Tensor, target: torch.Tensor, ignore: int, classes: str) -> float:
    """Plain loops: Σ_k e_π(k) (Δ(S_k) − Δ(S_{k−1})), Δ(S) = |S| / |{y = c} ∪ S|, where S holds
    the k pixels of largest error, read as the mispredicted set."""
    probs = logits.double().softmax(1).movedim(1, -1).reshape(-1, logits.shape[1]).tolist()
    labels = target.reshape(-1).tolist()
    pixels = [(p, y) for p, y in zip(probs, labels, strict=True) if y != ignore]
    values = []
    for c in range(logits.shape[1]):
        fg = [y == c for _, y in pixels]
        if classes == "present" and not any(fg):
            continue
        errors = [abs(float(f) - p[c]) for (p, _), f in zip(pixels, fg, strict=True)]
        order = sorted(range(len(errors)), key=lambda i: -errors[i])
        total, previous, chosen = 0.0, 0.0, []
        for i in order:
            chosen.append(i)
            union = sum(fg) + sum(1 for j in chosen if not fg[j])
            delta = len(chosen) / union
            total += errors[i] * (delta - previous)
            previous = delta
        values.append(total)
    return sum(values) / len(values)


@pytest.mark.parametrize("classes", ["present", "all"])
def test_lovasz_matches_the_set_function_definition(classes: str) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 7, generator=g) * 2
    target = torch.randint(0, 3, (2, 5, 7), generator=g)  # class 3 absent
    target[0, 0, :3] = 255
    want = reference(logits, target, 255, classes)
    got = lovasz_softmax(logits, target, ignore_index=255, classes=classes, tail=0)
    assert got.item() == pytest.approx(want, abs=1e-6)
    # confident logits: most errors fall in the unsorted tail, which adds at most `tail`
    sharp = logits * 6
    exact = lovasz_softmax(sharp, target, ignore_index=255, classes=classes, tail=0).item()
    assert exact == pytest.approx(reference(sharp, target, 255, classes), abs=1e-6)
    pruned = lovasz_softmax(sharp, target, ignore_index=255, classes=classes, tail=1e-2).item()
    assert 0 <= exact - pruned <= 1e-2 and exact != pruned


def through_the_sort(logits: torch.Tensor, target: torch.Tensor, classes: str) -> torch.Tensor:
    """The loss as autograd sees it when it back-propagates through each class's sorted errors,
    in float64: Σ_k e_π(k) (Δ_k − Δ_{k−1}) with the increments from the set function above."""
    probs = logits.double().softmax(1).movedim(1, -1).reshape(-1, logits.shape[1])
    labels = target.reshape(-1)
    values = []
    for c in range(logits.shape[1]):
        fg = labels == c
        if classes == "present" and not fg.any():
            continue
        errors, order = torch.where(fg, 1 - probs[:, c], probs[:, c]).sort(descending=True)
        fg_sorted = fg[order].double()
        union = fg.sum() + (1 - fg_sorted).cumsum(0)
        delta = torch.arange(1, len(order) + 1, dtype=torch.float64) / union
        values.append((errors * torch.diff(delta, prepend=delta.new_zeros(1))).sum())
    return torch.stack(values).mean()


@pytest.mark.parametrize("classes", ["present", "all"])
def test_lovasz_gradient_is_the_gradient_through_the_sort(classes: str) -> None:
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(2, 5, 6, 7, generator=g) * 3).requires_grad_()
    target = torch.randint(0, 4, (2, 6, 7), generator=g)  # class 4 absent
    want = torch.autograd.grad(through_the_sort(logits, target, classes), logits)[0]
    got = torch.autograd.grad(lovasz_softmax(logits, target, classes=classes, tail=0), logits)[0]
    torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-6)
    assert want.abs().max() > 1e-3


def test_lovasz_of_hard_predictions_is_one_minus_iou() -> None:
    target = torch.tensor([[[0, 0, 1, 1], [0, 2, 2, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [0, 2, 0, 0]]])
    logits = torch.nn.functional.one_hot(pred, 3).movedim(-1, 1).float() * 60
    # IoU by hand: class 0: 2 / 5, class 1: 2 / 4, class 2: 1 / 2
    expected = ((1 - 2 / 5) + (1 - 2 / 4) + (1 - 1 / 2)) / 3
    assert lovasz_softmax(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_lovasz_ignores_pixels_and_has_gradients() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 4, 4, generator=g, requires_grad=True)
    target = torch.randint(0, 3, (1, 4, 4), generator=g)
    target[0, 0] = 255
    loss = lovasz_softmax(logits, target)
    loss.backward()
    assert logits.grad[..., 0, :].abs().max() == 0  # ignored row: no gradient
    assert logits.grad[..., 1:, :].abs().sum() > 0
    # the true class's logit of a counted pixel: raising it lowers the loss
    grad_true = logits.grad[0, :, 1:].gather(0, target[0, 1:].unsqueeze(0))
    assert (grad_true <= 0).all() and (grad_true < 0).any()
    bumped = logits.detach().clone()
    bumped[..., 0, :] += 100  # ignored pixels change: the loss does not
    assert lovasz_softmax(bumped, target).item() == pytest.approx(loss.item(), abs=1e-7)
    empty = lovasz_softmax(logits, torch.full((1, 4, 4), 255))
    assert empty.item() == 0 and empty.requires_grad


def test_lovasz_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="classes must be"):
        lovasz_softmax(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.long), classes="x")
    with pytest.raises(ValueError, match="B×K×H×W"):
        lovasz_softmax(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 4, dtype=torch.long))


def test_segloss_adds_weighted_lovasz_to_the_main_loss_only() -> None:
    g = torch.Generator().manual_seed(2)
    logits, aux = torch.randn(2, 3, 6, 6, generator=g), torch.randn(2, 3, 6, 6, generator=g)
    target = torch.randint(0, 3, (2, 6, 6), generator=g)
    plain = build_loss("ce", aux_weights=[0.4])
    with_lovasz = build_loss("ce", aux_weights=[0.4], lovasz_weight=0.5)
    total0, _ = plain((logits, [aux]), target)
    total1, parts = with_lovasz((logits, [aux]), target)
    assert parts["lovasz"].item() == pytest.approx(lovasz_softmax(logits, target).item())
    assert total1.item() == pytest.approx(total0.item() + 0.5 * parts["lovasz"].item(), abs=1e-6)
    assert "lovasz" not in plain((logits, [aux]), target)[1]
    with pytest.raises(ValueError, match="lovasz_weight"):
        build_loss("ce", lovasz_weight=-1)


def test_config_refuses_a_negative_lovasz_weight() -> None:
    assert make_config({"model": "fpn_r18_bilinear", "lovasz_weight": 0.5}).lovasz_weight == 0.5
    with pytest.raises(ConfigError, match="lovasz_weight"):
        make_config({"model": "fpn_r18_bilinear", "lovasz_weight": -1})
