"""The peer networks pidnet_s and ddrnet23_slim, their logit upsampler, and the loss kinds."""

import math

import pytest
import torch
import torch.nn.functional as F

import rtseg
from rtseg.complexity import count_params
from rtseg.errors import CheckpointError, ConfigError, UnknownNameError
from rtseg.losses import SegLoss, boundary_target, build_loss, cross_entropy, weighted_bce
from rtseg.models import LOGIT_UPSAMPLERS, LogitUpsampler

pytestmark = pytest.mark.usefixtures("one_thread")

K, IGNORE = 3, 255
PEERS = ("pidnet_s", "ddrnet23_slim")
KINDS = {"pidnet_s": ("seg", "boundary"), "ddrnet23_slim": ("seg",)}
# Parameters of the official modules (19 classes), counted by instantiating them with torch:
# PIDNet models/pidnet.py PIDNet(m=2, n=3, planes=32, ppm_planes=96, head_planes=128,
# augment=False/True) at 4c158cf; DDRNet segmentation/DDRNet_23_slim.py DualResNet(BasicBlock,
# [2, 2, 2, 2], planes=32, spp_planes=128, head_planes=64, augment=False/True) at de0db31.
OFFICIAL_PARAMS = {"pidnet_s": (7_625_715, 7_720_935), "ddrnet23_slim": (5_695_987, 5_734_342)}
# every parameter group that must learn: stem, deep context, fusion, head, auxiliary heads
GROUPS = {"pidnet_s": ("conv1.", "layer5.", "spp.", "pag4.", "layer5_d.", "dfm.", "final_layer.",
                       "seghead_p.", "seghead_d."),
          "ddrnet23_slim": ("conv1.", "layer5.", "spp.", "down4.", "compression4.", "layer5_.",
                            "final_layer.", "seghead_extra.")}


def blocks(batch: int, h: int, w: int, cell: int = 16) -> torch.Tensor:
    """B×h×w labels in square class blocks (boundaries and interiors), a few pixels ignored."""
    g = torch.randint(0, K, (batch, h // cell + 1, w // cell + 1))
    t = g.repeat_interleave(cell, 1).repeat_interleave(cell, 2)[:, :h, :w].clone()
    t[:, :5, :7] = IGNORE
    return t


@pytest.mark.parametrize("name", PEERS)
def test_eval_returns_only_main_logits_at_odd_size(name):
    model = rtseg.create_model(name, K).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 97, 131))
    assert isinstance(out, torch.Tensor) and out.shape == (1, K, 97, 131)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", PEERS)
def test_training_outputs_kinds_and_gradients(name):
    model = rtseg.create_model(name, K).train()
    assert model.aux_kinds == KINDS[name] and len(model.aux_weights) == len(model.aux_kinds)
    logits, aux = model(torch.randn(2, 3, 97, 131))
    assert logits.shape == (2, K, 97, 131)
    channels = {"seg": K, "boundary": 1}
    assert [tuple(a.shape) for a in aux] == [(2, channels[k], 97, 131) for k in KINDS[name]]
    loss = build_loss("ce", model.aux_weights, aux_kinds=model.aux_kinds)
    total, parts = loss((logits, aux), blocks(2, 97, 131))
    total.backward()
    expected_parts = {"main", "aux1"} | ({"aux2", "aux2_bag"} if name == "pidnet_s" else set())
    assert set(parts) == expected_parts
    for prefix in GROUPS[name]:
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and all(g is not None for g in grads), prefix
        assert sum(g.abs().sum() for g in grads) > 0, f"no gradient reaches {prefix}"


@pytest.mark.parametrize("name", PEERS)
def test_parameters_equal_the_official_modules(name):
    without, with_aux = OFFICIAL_PARAMS[name]
    model = rtseg.create_model(name, 19, aux=False)
    assert count_params(model) == without
    assert model.aux_weights == () and model.aux_kinds == ()
    assert count_params(rtseg.create_model(name, 19)) == with_aux
    _, aux = model.train()(torch.randn(2, 3, 33, 47))
    assert aux == []


def test_official_loss_weights():
    assert rtseg.create_model("pidnet_s", K).aux_weights == (0.4, 20.0)
    assert rtseg.create_model("ddrnet23_slim", K).aux_weights == (0.4,)


@pytest.mark.parametrize("name,upsampler", [("pidnet_s", "gum"), ("ddrnet23_slim", "dysample")])
def test_upsampler_option(name, upsampler):
    model = rtseg.create_model(name, K, upsampler=upsampler)
    assert count_params(model) > count_params(rtseg.create_model(name, K))
    logits, aux = model.train()(torch.randn(2, 3, 97, 131))
    assert logits.shape == (2, K, 97, 131)
    logits.logsumexp(1).mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in model.named_parameters() if n.startswith("upsample."))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 97, 131)).shape == (1, K, 97, 131)


@pytest.mark.parametrize("name", LOGIT_UPSAMPLERS)
def test_logit_upsampler_every_name_at_odd_sizes(name):
    up = LogitUpsampler(name, 5, 8).eval()
    coarse, guide = torch.randn(2, 5, 7, 9), torch.randn(2, 8, 14, 18)
    with torch.no_grad():
        out = up(coarse, guide, (53, 70))
    assert out.shape == (2, 5, 53, 70)
    if name in ("bilinear", "gum"):  # GUM starts with zero offsets: bilinear sampling
        want = F.interpolate(coarse, (53, 70), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)


def test_unfit_and_unknown_upsampler_names():
    with pytest.raises(ConfigError, match="does not fit the class-map slot.*bilinear, gum, "
                                          "dysample, carafe, sapa"):
        rtseg.create_model("pidnet_s", K, upsampler="gai")
    with pytest.raises(UnknownNameError, match="unknown upsampler 'nope'.*bilinear, gum"):
        rtseg.create_model("ddrnet23_slim", K, upsampler="nope")
    with pytest.raises(ConfigError, match="takes no options"):
        LogitUpsampler("bilinear", K, 8, guidance="fusion")


@pytest.mark.parametrize("name", PEERS)
def test_imagenet_is_refused_with_the_reason(name):
    with pytest.raises(CheckpointError, match="Google Drive.*not at a stable URL"):
        rtseg.create_model(name, K, pretrained_backbone="imagenet")


# ---- the loss kinds, against plainly written references


def reference_boundary(label: list[list[int]], r: int) -> list[list[float]]:
    h, w = len(label), len(label[0])
    return [[float(len({label[j][i] for j in range(max(0, y - r), min(h, y + r + 1))
                        for i in range(max(0, x - r), min(w, x + r + 1))}) > 1)
             for x in range(w)] for y in range(h)]


def test_boundary_target_by_hand():
    label = torch.tensor([[[0, 0, 0, 1, 1, 1]] * 3])  # a vertical step between columns 2 and 3
    assert boundary_target(label, radius=1).tolist() == [[[0, 0, 1, 1, 0, 0]] * 3]
    assert boundary_target(label, radius=2).tolist() == [[[0, 1, 1, 1, 1, 0]] * 3]
    torch.manual_seed(1)
    label = blocks(2, 13, 17, cell=4)
    got = boundary_target(label)
    for b in range(2):
        assert got[b].tolist() == reference_boundary(label[b].tolist(), 2)


def hand_case() -> tuple[torch.Tensor, ...]:
    """1×6×10 labels (two classes, a step, one ignored corner), logits, boundary logits."""
    target = torch.zeros(1, 6, 10, dtype=torch.int64)
    target[:, :, 5:] = 1
    target[0, 0, 0] = target[0, 5, 9] = IGNORE
    torch.manual_seed(2)
    logits, seg_aux = torch.randn(1, 2, 6, 10), torch.randn(1, 2, 6, 10)
    boundary = torch.full((1, 1, 6, 10), -3.0)  # sigmoid 0.047
    boundary[0, 0, :, 3:7] = 3.0  # sigmoid 0.953 > 0.8: the bag mask
    boundary[0, 0, 0, 0] = 3.0  # confident but ignored
    return target, logits, seg_aux, boundary


def plain_bce(target, boundary) -> float:
    edges = reference_boundary(target[0].tolist(), 2)
    valid = [(y, x) for y in range(6) for x in range(10) if target[0, y, x] != IGNORE]
    pos = sum(edges[y][x] for y, x in valid)
    n = len(valid)
    total = 0.0
    for y, x in valid:
        z, e = boundary[0, 0, y, x].item(), edges[y][x]
        s = 1 / (1 + math.exp(-z))
        w = (n - pos) / n if e else pos / n
        total += w * -(e * math.log(s) + (1 - e) * math.log(1 - s))
    return total / n


def plain_ce(logits, target, keep) -> float:
    terms = []
    for y in range(6):
        for x in range(10):
            c = target[0, y, x].item()
            if c != IGNORE and keep(y, x):
                z = logits[0, :, y, x].tolist()
                terms.append(math.log(sum(math.exp(v) for v in z)) - z[c])
    return sum(terms) / len(terms)


def test_weighted_bce_and_bag_against_plain_sums():
    target, logits, seg_aux, boundary = hand_case()
    valid = target != IGNORE
    bce = weighted_bce(boundary, boundary_target(target), valid)
    assert bce.item() == pytest.approx(plain_bce(target, boundary), rel=1e-6)
    loss = SegLoss(cross_entropy, (0.4, 20.0), ("seg", "boundary"))
    total, parts = loss((logits, [seg_aux, boundary]), target)
    main = plain_ce(logits, target, lambda y, x: True)
    seg = plain_ce(seg_aux, target, lambda y, x: True)
    bag = plain_ce(logits, target, lambda y, x: 3 <= x < 7)  # sigmoid(boundary) > 0.8
    assert parts["main"].item() == pytest.approx(main, rel=1e-6)
    assert parts["aux1"].item() == pytest.approx(seg, rel=1e-6)
    assert parts["aux2"].item() == pytest.approx(plain_bce(target, boundary), rel=1e-6)
    assert parts["aux2_bag"].item() == pytest.approx(bag, rel=1e-6)
    assert total.item() == pytest.approx(main + 0.4 * seg + 20 * parts["aux2"].item() + bag,
                                         rel=1e-6)


def test_ignored_pixels_count_nowhere():
    target, logits, seg_aux, boundary = hand_case()
    outputs = [t.clone().requires_grad_(True) for t in (logits, seg_aux, boundary)]
    loss = build_loss("ohem", (0.4, 20.0), aux_kinds=("seg", "boundary"), thresh=0.7, min_kept=4)
    total, _ = loss((outputs[0], outputs[1:]), target)
    total.backward()
    ignored = target[0] == IGNORE
    for t in outputs:
        assert t.grad[0][:, ignored].abs().sum() == 0
        assert t.grad[0][:, ~ignored].abs().sum() > 0
    changed = [t.detach().clone() for t in outputs]
    for t in changed:
        t[0][:, ignored] = 50.0
    assert loss((changed[0], changed[1:]), target)[0].item() == pytest.approx(total.item())
    everything = torch.full_like(target, IGNORE)  # nothing counts: zero, not NaN
    assert loss((outputs[0], outputs[1:]), everything)[0].item() == 0.0


def test_segloss_kind_errors():
    with pytest.raises(ValueError, match="unknown auxiliary loss kind.*seg, boundary, detail"):
        SegLoss(cross_entropy, (1.0,), ("edge",))
    with pytest.raises(ValueError, match="must match one to one"):
        SegLoss(cross_entropy, (0.4, 20.0), ("seg",))
    target, logits, _, _ = hand_case()
    with pytest.raises(ValueError, match="B×1×H×W"):
        SegLoss(cross_entropy, (20.0,), ("boundary",))((logits, [logits]), target)


TINY = dict(model="pidnet_s", dataset="synthetic", crop_size=[32, 48],
            dataset_kwargs={"size": [32, 48], "num_images": dict(train=4, val=2, test=2)},
            batch_size=4, iters=2, eval_interval=2, ckpt_interval=2, log_interval=1, workers=0,
            loss="ohem", ohem_min_kept=500)


def test_trainer_builds_the_boundary_loss_from_the_model(tmp_path):
    import json

    from rtseg.training.config import make_config
    from rtseg.training.trainer import run_training

    run = run_training(make_config({**TINY, "out_dir": str(tmp_path), "run_name": "r"}))
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert {"main", "aux1", "aux2", "aux2_bag"} <= set(train_rows[0])
    with pytest.raises(ConfigError, match="pidnet_s has 2 auxiliary output.*seg, boundary"):
        run_training(make_config({**TINY, "out_dir": str(tmp_path), "run_name": "w",
                                  "aux_weights": [0.4]}))
