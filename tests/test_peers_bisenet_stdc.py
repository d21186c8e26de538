"""The peer networks bisenetv2 and stdc1_seg, and STDC's detail targets and detail loss."""

from __future__ import annotations

import math

import pytest
import torch

import rtseg
from rtseg.complexity import count_params
from rtseg.errors import CheckpointError, ConfigError
from rtseg.losses import DetailLoss, SegLoss, build_loss, cross_entropy, detail_targets

K = 5
IGNORE = 255

# Parameter counts of the reference code's own modules, built and counted with torch at
# num_classes=19 (see the models' docstrings): CoinCheung/BiSeNet 6b4b67a
# lib/models/bisenetv2.py BiSeNetV2(19, aux_mode='eval' / 'train'), and MichaelFan01/STDC-Seg
# 59ff37f models/model_stages.py BiSeNet('STDCNet813', 19) (InPlaceABNSync as BatchNorm2d),
# whose 12,048,928 include the unused ImageNet classifier and the unused detail heads.
BISENETV2 = {"eval": 3_358_627, "train": 5_231_487, "detail": 519_232, "segment": 1_159_504,
             "bga": 478_720, "head": 1_201_171}
STDC1_OFFICIAL_ALL = 12_048_928
STDC1_CLASSIFIER = 1_050_624 + 1_048_576 + 2_048 + 1_024_000  # conv_last, fc, bn, linear
STDC1_UNUSED_DETAIL = 18_624 + 37_056 + 295_104  # conv_out_sp2, sp4, sp16
STDC1_AUX = 75_072 + 75_072 + 147_648  # conv_out16, conv_out32, conv_out_sp8


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _nonzero(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():  # zero-initialised γ would hide gradients behind them
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return model


@pytest.mark.parametrize("name,kinds", [("bisenetv2", ("seg",) * 4),
                                        ("stdc1_seg", ("seg", "seg", "detail"))])
def test_odd_size_train_and_eval_outputs_and_gradients(name, kinds):
    model = _nonzero(rtseg.create_model(name, K)).train()
    assert model.aux_kinds == kinds and len(model.aux_weights) == len(kinds)
    assert model.aux_weights == ((1.0,) * len(kinds))  # the reference training code's weights
    x = torch.randn(2, 3, 97, 131)
    logits, aux = model(x)
    assert logits.shape == (2, K, 97, 131)
    assert [a.shape for a in aux] == [(2, 1 if k == "detail" else K, 97, 131) for k in kinds]
    target = torch.randint(0, K, (2, 97, 131))
    target[:, :5] = IGNORE
    total, parts = build_loss("ce", model.aux_weights, ignore_index=IGNORE,
                              aux_kinds=model.aux_kinds)((logits, aux), target)
    assert set(parts) == {"main", *(f"aux{i}" for i in range(1, len(kinds) + 1))}
    total.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not silent, f"no gradient reaches {silent[:5]}"
    model.eval()
    with torch.no_grad():
        out = model(x[:1])
    assert isinstance(out, torch.Tensor) and out.shape == (1, K, 97, 131)


@pytest.mark.parametrize("name", ["bisenetv2", "stdc1_seg"])
def test_final_resize_is_one_separate_step_with_a_stride4_guide(name):
    model = rtseg.create_model(name, K, aux=False).eval()
    seen = {}

    def spy(module, args):
        scores, guide, size = args
        seen.update(scores=scores.shape, guide=guide.shape, size=size)

    model.upsample.register_forward_pre_hook(spy)
    with torch.no_grad():
        model(torch.randn(1, 3, 97, 131))
    assert seen == {"scores": (1, K, 13, 17), "size": (97, 131),
                    "guide": (1, model.guide_channels, 25, 33)}  # ceil(97/4), ceil(131/4)
    assert model.guide_stride == 4


@pytest.mark.parametrize("name", ["bisenetv2", "stdc1_seg"])
@pytest.mark.parametrize("upsampler", ["gum", "dysample"])
def test_a_learned_upsampler_takes_the_final_step(name, upsampler):
    torch.manual_seed(0)
    model = rtseg.create_model(name, K, upsampler=upsampler).train()
    logits, aux = model(torch.randn(2, 3, 97, 131))
    assert logits.shape == (2, K, 97, 131)
    logits.sum().backward()
    grads = [p.grad for p in model.upsample.parameters()]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)


def test_an_upsampler_that_does_not_fit_the_class_map_is_refused():
    with pytest.raises(ConfigError, match="does not fit the class-map slot.*gum"):
        rtseg.create_model("stdc1_seg", K, upsampler="gai")


def test_parameter_counts_equal_the_reference_code():
    net = rtseg.create_model("bisenetv2", 19, aux=False)
    assert count_params(net) == BISENETV2["eval"]
    for part in ("detail", "segment", "bga", "head"):
        assert count_params(getattr(net, part)) == BISENETV2[part]
    assert count_params(rtseg.create_model("bisenetv2", 19)) == BISENETV2["train"]
    stdc = rtseg.create_model("stdc1_seg", 19, aux=False)
    with_aux = rtseg.create_model("stdc1_seg", 19)
    assert count_params(stdc) == 8_275_104
    assert count_params(with_aux) == count_params(stdc) + STDC1_AUX
    # the official total = rtseg's training network + the parts it builds but never trains
    assert count_params(with_aux) + STDC1_CLASSIFIER + STDC1_UNUSED_DETAIL == STDC1_OFFICIAL_ALL


def test_pretrained_backbone_errors_and_stdc_local_file(tmp_path):
    with pytest.raises(CheckpointError, match="from scratch"):
        rtseg.create_model("bisenetv2", K, "imagenet")
    with pytest.raises(CheckpointError, match="Google Drive"):
        rtseg.create_model("stdc1_seg", K, "imagenet")
    donor = rtseg.create_model("stdc1_seg", K, aux=False).backbone
    state = {f"module.{k}": v for k, v in donor.state_dict().items()}
    state["linear.weight"] = torch.zeros(1000, 1024)  # the classifier is dropped
    state["x2.0.0.conv.weight"] = state["module.features.0.conv.weight"]  # an alias, dropped
    torch.save({"state_dict": state}, tmp_path / "stdc1.tar")
    model = rtseg.create_model("stdc1_seg", K, str(tmp_path / "stdc1.tar"))
    assert torch.equal(model.backbone.features[7].conv_list[3].conv.weight,
                       donor.features[7].conv_list[3].conv.weight)
    del state["module.features.7.conv_list.3.bn.bias"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="missing keys"):
        rtseg.create_model("stdc1_seg", K, str(tmp_path / "bad.pth"))


# --- detail targets and detail loss against plainly written references -----------------------

def _slow_targets(label: list[list[int]]) -> list[list[int]]:
    """STDC's detail target of one H×W label map, written out pixel by pixel."""
    h, w = len(label), len(label[0])

    def at(y, x):
        return label[y][x] if 0 <= y < h and 0 <= x < w else 0  # zero padding

    def binary(stride):
        oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1  # conv 3×3, padding 1
        lap = [[8 * at(i * stride, j * stride)
                - sum(at(i * stride + dy, j * stride + dx) for dy in (-1, 0, 1)
                      for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
                for j in range(ow)] for i in range(oh)]
        # nearest resize back to h×w: source index floor(dst · in / out)
        return [[1 if max(lap[y * oh // h][x * ow // w], 0) > 0.1 else 0 for x in range(w)]
                for y in range(h)]

    b1, b2, b4 = binary(1), binary(2), binary(4)
    return [[1 if 0.6 * b1[y][x] + 0.3 * b2[y][x] + 0.1 * b4[y][x] > 0.1 else 0
             for x in range(w)] for y in range(h)]


def _label_maps() -> torch.Tensor:
    a = torch.zeros(9, 11, dtype=torch.int64)
    a[2:7, 3:9] = 3  # a block of class 3
    a[4, 5] = 1  # a hole of a smaller class
    a[:, 9:] = IGNORE  # a void stripe
    a[8, 0] = 2  # a corner pixel
    b = torch.randint(0, 4, (9, 11), generator=torch.Generator().manual_seed(1))
    b[0:3, 0:3] = IGNORE
    return torch.stack([a, b])


def test_detail_targets_by_hand():
    label = torch.zeros(1, 5, 5, dtype=torch.int64)
    label[0, 2, 2] = 1
    t = detail_targets(label)
    # stride 1 marks (2, 2); stride 2 marks its 3×3 grid cell (1, 1), which the nearest resize
    # back to 5×5 spreads over rows and columns 2-3; stride 4 sees nothing
    want = torch.zeros(1, 1, 5, 5)
    want[0, 0, 2:4, 2:4] = 1
    assert torch.equal(t, want)


def test_detail_targets_equal_the_slow_reference():
    labels = _label_maps()
    fast = detail_targets(labels)
    assert fast.shape == (2, 1, 9, 11) and fast.dtype == torch.float32
    for i in range(2):
        assert fast[i, 0].tolist() == _slow_targets(labels[i].tolist())


def test_detail_loss_equals_the_slow_reference_and_ignores_void():
    labels = _label_maps()
    logits = torch.randn(2, 1, 9, 11, generator=torch.Generator().manual_seed(2))
    loss = DetailLoss(IGNORE)
    bce, dice = loss.parts(logits, labels)
    bce_sum, n, dices = 0.0, 0, []
    for i in range(2):
        t = _slow_targets(labels[i].tolist())
        inter = p_sum = t_sum = 0.0
        for y in range(9):
            for x in range(11):
                if labels[i, y, x] == IGNORE:
                    continue
                z, p = logits[i, 0, y, x].item(), 1 / (1 + math.exp(-logits[i, 0, y, x].item()))
                bce_sum += max(z, 0) - z * t[y][x] + math.log1p(math.exp(-abs(z)))
                n += 1
                inter, p_sum, t_sum = inter + p * t[y][x], p_sum + p, t_sum + t[y][x]
        dices.append(1 - (2 * inter + 1) / (p_sum + t_sum + 1))
    assert bce.item() == pytest.approx(bce_sum / n, rel=1e-5)
    assert dice.item() == pytest.approx(sum(dices) / 2, rel=1e-5)
    assert loss(logits, labels).item() == pytest.approx(bce.item() + dice.item(), rel=1e-6)
    # logits at ignored pixels change nothing; an all-void batch gives 0 with a graph
    moved = torch.where(labels.unsqueeze(1) == IGNORE, logits + 7.0, logits)
    assert loss(moved, labels).item() == pytest.approx(loss(logits, labels).item(), rel=1e-6)
    void = torch.full_like(labels, IGNORE)
    x = logits.clone().requires_grad_()
    zero = loss(x, void)
    zero.backward()
    assert zero.item() == 0.0 and not x.grad.any()


def test_seg_loss_dispatches_detail_outputs():
    labels = _label_maps()
    seg = torch.randn(2, K, 9, 11)
    detail = torch.randn(2, 1, 9, 11)
    total, parts = build_loss("ce", (0.5, 2.0), ignore_index=IGNORE,
                              aux_kinds=("seg", "detail"))((seg, [seg, detail]), labels)
    ce = cross_entropy(seg, labels, IGNORE)
    want = ce + 0.5 * ce + 2.0 * DetailLoss(IGNORE)(detail, labels)
    assert total.item() == pytest.approx(want.item(), rel=1e-6)
    assert parts["aux2"].item() == pytest.approx(DetailLoss(IGNORE)(detail, labels).item())
    with pytest.raises(ValueError, match="expected detail logits B×1×H×W"):
        SegLoss(cross_entropy, (1.0,), ("detail",))((seg, [seg]), labels)  # K channels
    with pytest.raises(ValueError, match="unknown auxiliary loss kind"):
        SegLoss(cross_entropy, (1.0,), ("edge",))
    with pytest.raises(ValueError, match="must match one to one"):
        SegLoss(cross_entropy, (1.0, 1.0), ("seg",))
