"""Class-weighted losses and the run's class weights (config, counting, the two weightings)."""

import math

import pytest
import torch
import torch.nn.functional as F

from rtseg.data import Synthetic
from rtseg.errors import ConfigError
from rtseg.losses import OhemCrossEntropy, build_loss, class_weights, cross_entropy
from rtseg.training.class_weights import label_counts, run_class_weights
from rtseg.training.config import make_config


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 5, 6, generator=g, requires_grad=True)
    target = torch.randint(0, 4, (2, 5, 6), generator=g)
    target[0, 0, :3] = 255
    return logits, target


def test_weighted_cross_entropy_equals_torch_weighted_mean():
    logits, target = _batch()
    w = torch.tensor([0.5, 2.0, 1.0, 4.0])
    ours = cross_entropy(logits, target, weight=w)
    ref = F.cross_entropy(logits, target, weight=w, ignore_index=255)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert not torch.allclose(ours, cross_entropy(logits, target))


def test_weighted_ohem_is_the_weighted_mean_over_the_unweighted_selection():
    logits, target = _batch(1)
    w = torch.tensor([1.0, 3.0, 0.25, 2.0])
    plain = OhemCrossEntropy(thresh=0.5, min_kept=10)
    weighted = OhemCrossEntropy(thresh=0.5, min_kept=10, weight=w)
    kept = plain.kept_mask(logits, target)
    assert torch.equal(kept, weighted.kept_mask(logits, target))
    total, norm = 0.0, 0.0
    for b, i, j in kept.nonzero().tolist():  # plainly: Σ w ℓ / Σ w over the kept pixels
        y = int(target[b, i, j])
        ell = -torch.log_softmax(logits[b, :, i, j], 0)[y]
        total, norm = total + w[y] * ell, norm + w[y]
    assert torch.allclose(weighted(logits, target), total / norm, atol=1e-6)
    weighted(logits, target).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_build_loss_passes_the_weights_to_every_output():
    logits, target = _batch(2)
    w = torch.tensor([1.0, 5.0, 1.0, 1.0])
    loss = build_loss("ce", aux_weights=[0.4], weight=w)
    total, parts = loss((logits, [logits]), target)
    assert torch.allclose(parts["aux1"], cross_entropy(logits, target, weight=w))
    assert torch.allclose(total, 1.4 * parts["main"])


def test_inverse_log_and_median_frequency_on_hand_counts():
    pixels = torch.tensor([60.0, 30.0, 10.0, 0.0])
    image_pixels = torch.tensor([100.0, 100.0, 50.0, 0.0])
    enet = class_weights("inverse_log_frequency", pixels, image_pixels)
    expect = [1 / math.log(1.02 + p) for p in (0.6, 0.3, 0.1)]
    assert torch.allclose(enet[:3], torch.tensor(expect))
    assert enet[3] == enet[:3].max()  # an absent class takes the largest weight
    mf = class_weights("median_frequency", pixels, image_pixels)
    # f = 0.6, 0.3, 0.2; median 0.3
    assert torch.allclose(mf[:3], torch.tensor([0.5, 1.0, 1.5]))
    with pytest.raises(ValueError, match="unknown class weighting"):
        class_weights("balanced", pixels, image_pixels)


def test_label_counts_count_the_raw_labels():
    ds = Synthetic("train", size=(16, 24), num_images=3, seed=0)
    pixels, image_pixels = label_counts(ds)
    labels = [ds.load(i)[1] for i in range(len(ds))]
    for c in range(ds.num_classes):
        assert pixels[c] == sum(int((lab == c).sum()) for lab in labels)
        assert image_pixels[c] == sum(lab.numel() for lab in labels if (lab == c).any())


def test_config_accepts_a_name_or_one_positive_weight_per_class():
    ds = Synthetic("train", size=(16, 24), num_images=2, seed=0)
    cfg = make_config({"class_weights": "median_frequency"})
    assert run_class_weights(cfg, ds).shape == (ds.num_classes,)
    cfg = make_config({"class_weights": [1.0] * ds.num_classes})
    assert torch.equal(run_class_weights(cfg, ds), torch.ones(ds.num_classes))
    assert run_class_weights(make_config({}), ds) is None
    with pytest.raises(ConfigError, match="one weight per class"):
        run_class_weights(make_config({"class_weights": [1.0, 2.0]}), ds)
    for bad in ("balanced", [1.0, -1.0], [], 3):
        with pytest.raises(ConfigError, match="class_weights must be"):
            make_config({"class_weights": bad})
