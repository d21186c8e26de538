"""Exported graphs hold the upsamplers' export-safe fast formulas (issue 30, item 1).

Each formula is checked twice: in eager PyTorch against the plain formula
(:func:`rtseg.layers.export_paths` against :func:`rtseg.layers.reference_paths`, float64), and
as an ONNX file run by ONNX Runtime against the PyTorch model's eval output, exported at one
size and run at two others (odd H and W, batch 2), so that no size is baked into the graph.
The op counts say which formula each graph holds; OpenVINO runs every file once.
"""

from __future__ import annotations

import collections
import warnings

import pytest
import torch
import torch.nn.functional as F

import rtseg
from rtseg.deploy.export import check_onnx, export_onnx
from rtseg.errors import UsageError
from rtseg.layers import export_paths, reference_paths, static_sizes
from rtseg.upsample import IFA, create_upsampler
from rtseg.upsample import gai as gai_module
from rtseg.upsample import gum as gum_module
from rtseg.upsample.fast_attention import FastAttention
from rtseg.upsample.gum import GUM, grid_sample_as, grid_sample_gather
from rtseg.upsample.ifa import SpatialEncoding

onnx = pytest.importorskip("onnx", reason="onnx is an optional extra")
pytest.importorskip("onnxruntime", reason="onnxruntime is an optional extra")

pytestmark = pytest.mark.usefixtures("one_thread")

EXPORT_SIZE = (128, 256)
RUN_CASES = [(2, (97, 131)), (2, (128, 256))]


def _randomise(module: torch.nn.Module) -> torch.nn.Module:
    """Random BN statistics and affines, non-zero GAI γ, GUM offsets of a few coarse pixels
    (some samples fall outside the map: the border clamp counts) and IFA frequencies that mix
    δy and δx: a formula that drops a term then differs."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
            if isinstance(getattr(m, "gamma", None), torch.nn.Parameter):
                m.gamma.fill_(0.7)
            if isinstance(m, GUM):
                m.offset.weight.copy_(0.2 * torch.randn(m.offset.weight.shape, generator=g))
                m.offset.bias.copy_(torch.randn(2, generator=g))
            if isinstance(m, SpatialEncoding):
                m.freqs.add_(torch.randn(m.freqs.shape, generator=g))
    return module.eval()


def _ops(path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _constant_nodes(path) -> list[str]:
    """Nodes (other than Constant) that read only initializers and constants: weight arithmetic
    left in the graph (``rtseg.deploy.export.fold_constants`` removes it)."""
    graph = onnx.load(str(path)).graph
    known = {i.name for i in graph.initializer}
    known.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    return [n.op_type for n in graph.node if n.op_type != "Constant" and n.input
            and all(i == "" or i in known for i in n.input)]


def _spy(monkeypatch, owner, name: str) -> list[int]:
    """Count the calls of ``owner.name`` (the export-safe formula under test)."""
    calls: list[int] = []
    original = getattr(owner, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


# --- eager: each export-safe formula equals the plain formula (float64) ---------------------

@pytest.mark.parametrize("name, owner, formula", [
    ("fast_attention", FastAttention, "_qkv_maps"),
    ("gai", gai_module, "criss_cross_lines"),
    ("gum", gum_module, "grid_sample_gather"),
])
def test_pairwise_export_formula_equals_reference(monkeypatch, name, owner, formula):
    up = _randomise(create_upsampler(name, 8, 8, 8)).double()
    calls = _spy(monkeypatch, owner, formula)
    for b, (h, w), (hf, wf) in [(2, (5, 6), (10, 12)), (1, (4, 7), (7, 13)), (2, (1, 1), (2, 2)),
                                (1, (3, 1), (5, 1))]:
        coarse, fine = torch.randn(b, 8, h, w).double(), torch.randn(b, 8, hf, wf).double()
        with torch.no_grad():
            with reference_paths(), grid_sample_as("gather"):
                ref = up(coarse, fine)
            with export_paths(), grid_sample_as("gather"):
                out = up(coarse, fine)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert calls, f"{formula} did not run"


@pytest.mark.parametrize("size", [(16, 24), (15, 21), (33, 17)])
def test_ifa_export_formula_equals_reference(monkeypatch, size):
    ifa = _randomise(IFA([3, 4, 5, 6], 7, hidden=(8, 7, 6))).double()
    feats = [torch.randn(2, c, -(-size[0] // 2**i), -(-size[1] // 2**i)).double()
             for i, c in enumerate([3, 4, 5, 6])]
    calls = _spy(monkeypatch, IFA, "forward_lines")
    with torch.no_grad():
        with reference_paths():
            ref = ifa(feats, size)
        with export_paths():
            out = ifa(feats, size)
    assert calls
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("size", [(16, 24), (15, 21), (8, 40), (12, 12)])
def test_ifa_static_size_formula_equals_reference(monkeypatch, size):
    # levels dividing the grid are broadcast (summed coarse to fine where one grid divides the
    # next: at 12×12 the 3×3 level does not divide by the 2×2 one) and the position term
    # tiled; others gathered
    ifa = _randomise(IFA([3, 4, 5, 6], 7, hidden=(8, 7, 6))).double()
    feats = [torch.randn(2, c, -(-size[0] // 2**i), -(-size[1] // 2**i)).double()
             for i, c in enumerate([3, 4, 5, 6])]
    with torch.no_grad():
        with reference_paths():
            ref = ifa(feats, size)
        with export_paths(), static_sizes():
            out = ifa(feats, size)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_grid_sample_gather_is_grid_sample():
    # odd sizes, batch 2, samples inside, on cell centres and borders, and far outside
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 7, generator=g).double()
    grid = 3 * torch.rand(2, 9, 11, 2, generator=g).double() - 1.5
    grid[0, 0, :7, 0] = (2 * torch.arange(7).double() + 1) / 7 - 1  # cell centres
    grid[0, 1, :3, :] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1 - 1 / 7, 1 - 1 / 5]])
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(grid_sample_gather(x, grid), ref, rtol=1e-12, atol=1e-12)


def test_reference_paths_and_training_keep_the_plain_formulas(monkeypatch):
    calls = [_spy(monkeypatch, gai_module, "criss_cross_lines"),
             _spy(monkeypatch, gum_module, "grid_sample_gather"),
             _spy(monkeypatch, IFA, "forward_lines"),
             _spy(monkeypatch, FastAttention, "_qkv_maps")]
    coarse, fine = torch.randn(1, 8, 4, 5), torch.randn(1, 8, 8, 10)
    ifa = _randomise(IFA([8, 8], 8, hidden=(8,)))
    with torch.no_grad(), export_paths(), grid_sample_as("gather"):
        with reference_paths():
            for name in ("gai", "gum", "fast_attention"):
                _randomise(create_upsampler(name, 8, 8, 8))(coarse, fine)
            ifa([fine, coarse], (8, 10))
        for name in ("gai", "gum", "fast_attention"):  # training mode: batch statistics
            create_upsampler(name, 8, 8, 8).train()(coarse, fine)
        ifa.train()([fine, coarse], (8, 10))
    assert not any(calls)


# --- ONNX: the graphs hold the fast formulas and match PyTorch at other sizes ---------------

def _export(model, path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(model, path, EXPORT_SIZE, **kwargs)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name → (model, fast export, plain export), fpn_r18 networks with random weights."""
    out = tmp_path_factory.mktemp("fast")
    cache = {}

    def get(up: str):
        if up not in cache:
            torch.manual_seed(0)
            model = _randomise(rtseg.create_model(f"fpn_r18_{up}", 5, aux=False))
            sampling = {"grid_sample": "gather"} if up == "gum" else {}
            fast = _export(model, out / f"{up}.onnx", **sampling)
            with reference_paths():
                plain = _export(model, out / f"{up}_plain.onnx")
            cache[up] = (model, fast, plain)
        return cache[up]

    return get


@pytest.mark.parametrize("up", ["fast_attention", "ifa", "gai", "gum"])
def test_onnx_fast_graph_matches_pytorch_at_other_sizes(exported, up):
    model, fast, _ = exported(up)
    for batch, size in RUN_CASES:
        assert check_onnx(model, fast, size, batch=batch) <= 1e-4


@pytest.mark.parametrize("up", ["fast_attention", "ifa", "gai", "gum"])
def test_onnx_fast_graph_holds_the_fast_formula(exported, up):
    _, fast, plain = exported(up)
    ops, ref = _ops(fast), _ops(plain)
    assert not _constant_nodes(fast)  # the traced weight arithmetic is folded
    if up == "fast_attention":  # per block: Q and K in one Conv, no output-projection Conv
        assert ops["Conv"] == ref["Conv"] - 2 * 3
        assert ops["Transpose"] < ref["Transpose"]
        assert ops["ReduceL2"] == 2 * 3 and "Expand" not in ops  # norms divide by broadcasting
    elif up == "ifa":  # rows: 3 MLP Gemm + 1 position Gemm, BN folded, level 0's codes folded
        assert ops["Gemm"] == 4 and ops["Conv"] == ref["Conv"] - 8
        assert ref["BatchNormalization"] == 1 and ops["BatchNormalization"] == 0
        assert ops["Sin"] == ref["Sin"] - 1 and "Unique" not in ops
    elif up == "gai":  # no energies masked by Where or −inf: the column's weights × an H×H 0/1
        assert ops["Where"] == 0 < ref["Where"]
        assert ops["Transpose"] < ref["Transpose"]
    else:
        assert ref["GridSample"] == 3 and ops["GridSample"] == 0
        assert ops["Gather"] >= ref["Gather"] + 4 * 3


@pytest.mark.parametrize("up", ["ifa", "carafe"])
def test_static_export_records_size_specific_formulas(exported, tmp_path, up):
    # a graph for one size: IFA's levels broadcast (no gathers, the position term a constant
    # table), CARAFE's taps slices of the padded map; equal to PyTorch at that size
    torch.manual_seed(0)
    model = exported(up)[0] if up == "ifa" else _randomise(
        rtseg.create_model("fpn_r18_carafe", 5, aux=False))
    static = _export(model, tmp_path / "static.onnx", dynamic=False)
    dynamic = exported(up)[1] if up == "ifa" else _export(model, tmp_path / "dynamic.onnx")
    ops, ref = _ops(static), _ops(dynamic)
    assert check_onnx(model, static, EXPORT_SIZE, batch=1) <= 1e-4
    assert ops["Shape"] == 0 < ref["Shape"]  # every size a constant (export.fold_shapes)
    if up == "ifa":
        assert ref["Gather"] >= 6 and ops["Gather"] < ref["Gather"] - 4
        assert ops["Sin"] == 0 < ref["Sin"]  # the periodic table folded into a constant
    else:
        # the gather loop: 5 row and 25 column gathers a tap window, at three FPN levels
        assert ops["Gather"] <= ref["Gather"] - 3 * 30 and ops["Slice"] >= 3 * 25


def test_static_export_folds_every_size_read(tmp_path):
    # EfficientNet-Lite pads from the traced sizes ("SAME"), so shape inference learns the
    # sizes of later tensors only once the pads are folded: folded until nothing is left
    model = _randomise(rtseg.create_model("fpn_lite0_ifa", 5, aux=False))
    path = _export(model, tmp_path / "lite.onnx", dynamic=False)
    ops = _ops(path)
    assert ops["Shape"] == 0 and ops["Sin"] == 0 and ops["Range"] == 0
    assert check_onnx(model, path, EXPORT_SIZE, batch=1) <= 1e-4


@pytest.mark.parametrize("up", ["fast_attention", "ifa", "gai", "gum"])
def test_openvino_runs_the_fast_graph(exported, up):
    pytest.importorskip("openvino", reason="openvino is an optional extra")
    from rtseg.deploy.runtimes import OpenVINOModel

    model, fast, _ = exported(up)
    x = torch.randn(1, 3, 97, 131, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ref = model(x)
    assert (OpenVINOModel(fast)(x) - ref).abs().max() <= 1e-4


def test_gather_sampling_needs_no_opset_16(tmp_path):
    model = _randomise(rtseg.create_model("gun", 5, aux=False))
    path = _export(model, tmp_path / "gun.onnx", opset=15, grid_sample="gather")
    assert "GridSample" not in _ops(path)
    assert check_onnx(model, path, (97, 131), batch=2) <= 1e-4
    with pytest.raises(UsageError, match=r"grid_sample \(DySample\), which needs opset >= 16"):
        _export(rtseg.create_model("fpn_r18_dysample", 5), tmp_path / "d.onnx", opset=15,
                grid_sample="gather")
    with pytest.raises(UsageError, match="unknown grid_sample 'nearest'"):
        _export(model, tmp_path / "x.onnx", grid_sample="nearest")


def test_rtseg_export_records_the_sampling(tmp_path):
    from rtseg.deploy.metadata import read_metadata

    model = _randomise(rtseg.create_model("gun", 5, aux=False))
    report = rtseg.export(model, tmp_path / "gun.onnx", size=(64, 96), grid_sample="gather",
                          name="gun")
    assert report.max_diff <= 1e-4 and "GridSample as gathers" in str(report)
    assert read_metadata(tmp_path / "gun.onnx")["grid_sample"] == "gather"
    with pytest.raises(UsageError, match="unknown grid_sample"):
        rtseg.export(model, tmp_path / "x.onnx", grid_sample="bicubic")
    from rtseg.cli import main

    out = tmp_path / "cli.onnx"
    assert main(["export", "gun", "--onnx", str(out), "--size", "64", "96", "--no-check",
                 "--grid-sample", "gather"]) == 0
    assert read_metadata(out)["grid_sample"] == "gather" and "GridSample" not in _ops(out)


def test_ifa_module_exports_with_regular_and_irregular_levels(tmp_path):
    # the IFA module alone, exported where every level divides the grid, run where none does
    ifa = _randomise(IFA([3, 4, 5], 6, hidden=(8, 7)))

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ifa = ifa

        def forward(self, x):
            feats = [x[:, :3], F.avg_pool2d(x[:, :4], 2, ceil_mode=True),
                     F.avg_pool2d(x[:, :5], 4, ceil_mode=True)]
            return self.ifa(feats, tuple(x.shape[-2:]))

    model = Wrap().eval()
    path = tmp_path / "ifa.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 5, 16, 24),), str(path), dynamo=False,
                          opset_version=17, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}})
    from rtseg.deploy.runtimes import OnnxRuntimeModel

    run = OnnxRuntimeModel(path)
    for shape in [(2, 5, 15, 21), (1, 5, 33, 17), (2, 5, 16, 24)]:
        x = torch.randn(*shape)
        with reference_paths():
            ref = model(x).detach()
        torch.testing.assert_close(run(x), ref, rtol=1e-4, atol=1e-4)
