"""Every registered network: shapes, outputs, gradients, determinism, export."""

import pytest
import torch

import rtseg
from rtseg.losses import SegLoss, cross_entropy
from rtseg.models import SegmentationModel

MODELS = rtseg.list_models()
K = 5


def test_registry_lists_every_method():
    expected = {"gain_r18", "fanet18", "fanet34", "ifa_r50", "ifa_r18", "gun"}
    expected |= {f"fpn_r18_{u}" for u in
                 ("bilinear", "gai", "gai_nonlocal", "fast_attention", "ifa", "gum")}
    assert expected <= set(MODELS)


def test_create_model_errors():
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        rtseg.create_model("nope", 3)
    with pytest.raises(ValueError, match="num_classes"):
        rtseg.create_model("fpn_r18_bilinear", 0)


@pytest.mark.parametrize("name", MODELS)
def test_eval_output_size_odd_input_and_determinism(name):
    model = rtseg.create_model(name, K).eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert a.shape == (1, K, 97, 131)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", MODELS)
def test_training_outputs_and_gradients_reach_every_parameter(name):
    model = rtseg.create_model(name, K)
    assert isinstance(model, SegmentationModel)
    with torch.no_grad():  # zero-initialised parts (γ, offset heads) would hide gradients
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    model.train()
    x = torch.randn(2, 3, 65, 79)
    logits, aux = model(x)
    assert logits.shape == (2, K, 65, 79)
    assert len(aux) == len(model.aux_weights) == len(model.aux_kinds)
    channels = {"seg": K, "boundary": 1, "detail": 1}  # per auxiliary loss kind
    assert all(a.shape == (2, channels[k], 65, 79) for a, k in zip(aux, model.aux_kinds))
    # class blocks, so that label boundaries and interiors both occur (a boundary loss)
    target = torch.randint(0, K, (2, 5, 6)).repeat_interleave(13, 1).repeat_interleave(14, 2)
    target = target[:, :65, :79]
    loss, _ = SegLoss(cross_entropy, model.aux_weights, model.aux_kinds)((logits, aux), target)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    zero = {n for n, p in model.named_parameters() if p.grad.abs().sum() == 0}
    # IFA decodes on the grid of its finest level, where every δ is 0: that level's encoding
    # frequencies get a zero gradient by construction (as in the official code), nothing else.
    expected = {n for n, _ in model.named_parameters() if n.endswith("encodings.0.freqs")}
    # BiSeNetV2's context embedding: BN(global mean) → 1×1 conv → BN in training mode. The first
    # BN's shift moves every image's 1×1 map alike, which the second BN's batch mean removes: its
    # gradient is 0 up to rounding (the reference code's block is the same).
    if name == "bisenetv2":
        shift = dict(model.named_parameters())["segment.S5_5.bn.bias"]
        assert shift.grad.abs().max() <= 1e-6
        zero.discard("segment.S5_5.bn.bias")
    assert zero == expected, f"no gradient reaches: {sorted(zero - expected)[:10]}"


def test_aux_false_builds_no_aux_heads():
    with_aux = rtseg.create_model("gain_r18", K)
    without = rtseg.create_model("gain_r18", K, aux=False)
    n = sum(p.numel() for p in with_aux.parameters()) - sum(p.numel() for p in without.parameters())
    assert n == 2 * (128 * 128 * 9 + 128 + 2 * 128 + 128 * K + K)
    logits, aux = without.train()(torch.randn(2, 3, 64, 64))
    assert aux == []


@pytest.mark.parametrize("name", MODELS)
def test_export_matches_eager(name):
    model = rtseg.create_model(name, K).eval()
    x = torch.randn(1, 3, 97, 131)
    exported = torch.export.export(model, (x,), strict=False)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), atol=1e-4, rtol=1e-4)
