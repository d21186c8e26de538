"""int8 of the guided upsamplers (issue 30, item 3): only what must be float stays float.

Each guided ``fpn_r18_<up>`` network (random weights, BN statistics randomised as in
``studies.common.randomise_weights`` after ``torch.manual_seed(0)``; GUM with
``grid_sample="gather"``) is exported at 64×128 with dynamic batch/H/W, as ``rtseg export``
writes it, and quantised as ``rtseg export --int8 --calib synthetic`` does (here 4 calibration
images). Checked on each file: the kernels ONNX Runtime runs (its optimised graph, QDQ fusions
applied), the tensors that are never rounded to 8 bits, and the logits against the fp32 file on
4 other synthetic images, also against the quantiser's own placement (``islands=False``).
The placement rules on small graphs: tests/test_quantize_islands.py.
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
import torch

import rtseg

onnx = pytest.importorskip("onnx", reason="the int8 path needs onnx")
ort = pytest.importorskip("onnxruntime", reason="the int8 path needs onnxruntime")

from rtseg.deploy.export import export_onnx  # noqa: E402
from rtseg.deploy.quantize import calibration_batches, quantize_int8  # noqa: E402
from studies.common import randomise_weights  # noqa: E402

SIZE = (64, 128)
OTHER = (96, 160)  # a dynamic int8 file runs at any size; its ranges were calibrated at SIZE
GUIDED = ["fpn_r18_gai", "fpn_r18_ifa", "fpn_r18_gum", "fpn_r18_fast_attention"]
# Largest fraction of pixels whose class may change against fp32, and largest mean |logit
# difference| over the fp32 logits' standard deviation, at either size. Random weights leave
# the classes close together (logit std about 0.2), so labels flip for differences that would
# not move a trained network's. Measured here (islands): at most 4.5 % and 0.023 at 64×128
# (GUM), 8.4 % and 0.033 at 96×160 (GUM; the quantiser's own placement: 42.5 % and 0.277).
MAX_CHANGED = 0.10
MAX_RELATIVE = 0.04


def _kernels(path, folder) -> Counter:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(folder / f"{path.stem}.optimised.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)


def _logits(path, images):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return [session.run(None, {"image": x})[0] for x in images]


@pytest.fixture(scope="module", params=GUIDED)
def quantised(request, tmp_path_factory):
    """(name, fp32 file, its graph, {islands: (int8 file, its graph, kernels, logits errors)})."""
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    torch.manual_seed(0)
    model = randomise_weights(rtseg.create_model(name, 11, aux=False))
    src = folder / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, src, SIZE, grid_sample="gather" if name.endswith("gum") else "op")
    calib = list(calibration_batches("synthetic", SIZE, 4))
    checks = {size: list(calibration_batches("synthetic", size, 4, seed=1))
              for size in (SIZE, OTHER)}
    reference = {size: _logits(src, images) for size, images in checks.items()}
    files = {}
    for islands in (True, False):
        dst = folder / f"{name}.{'islands' if islands else 'plain'}.int8.onnx"
        quantize_int8(src, dst, calib, islands=islands)
        errors = {}
        for size, images in checks.items():
            pairs = list(zip(reference[size], _logits(dst, images)))
            errors[size] = (float(np.mean([(a.argmax(1) != b.argmax(1)).mean() for a, b in pairs])),
                            float(np.mean([np.abs(a - b).mean() / a.std() for a, b in pairs])))
        files[islands] = (dst, onnx.load(str(dst)).graph, _kernels(dst, folder), errors)
    return name, src, onnx.load(str(src)).graph, files


def _maker(graph):
    made = {o: n for n in graph.node for o in n.output}
    return lambda name: made[name].op_type if name in made else "input"


def test_products_run_int8_and_only_float_arithmetic_reads_float(quantised):
    name, _, fp32, files = quantised
    _, graph, kernels, _ = files[True]
    ops = Counter(n.op_type for n in fp32.node)
    assert kernels["QLinearConv"] == ops["Conv"]  # every convolution, as before
    products = ops["MatMul"] + ops["Gemm"]
    int8 = kernels["QLinearMatMul"] + kernels["MatMulIntegerToFloat"] + kernels["QGemm"]
    # float on purpose: IFA's δ·M (phases for Sin and Cos); fast attention's folded output
    # projection W·S on the C×d summary (the weight is the product's first input, quantised
    # per channel along the inner axis, which no int8 kernel takes; 128·128·32 multiply-adds)
    floating = {"fpn_r18_ifa": 3, "fpn_r18_fast_attention": 3}.get(name, 0)
    assert kernels["MatMul"] + kernels["FusedMatMul"] + kernels["Gemm"] == floating, kernels
    assert int8 == products - floating, kernels
    maker = _maker(graph)
    for node in graph.node:
        if node.op_type in ("Exp", "ReduceMax", "Sub", "Sin", "Cos", "ReduceSum", "Where"):
            assert "DequantizeLinear" not in [maker(i) for i in node.input if i], node.name
        if node.op_type == "Shape":
            assert maker(node.input[0]) != "DequantizeLinear", node.name
    # far fewer dequantisations than the quantiser's own placement
    assert kernels["DequantizeLinear"] <= files[False][2]["DequantizeLinear"] // 2


def test_what_each_guided_upsampler_keeps_float(quantised):
    name, _, _, files = quantised
    _, graph, kernels, _ = files[True]
    _, plain_graph, plain_kernels, _ = files[False]
    maker = _maker(graph)
    quantised_from = Counter(maker(q.input[0]) for q in graph.node if q.op_type == "QuantizeLinear")
    plain_from = Counter(_maker(plain_graph)(q.input[0]) for q in plain_graph.node
                         if q.op_type == "QuantizeLinear")
    if name == "fpn_r18_gai":
        # energies go from the int8 products straight into the float softmaxes (the quantiser
        # alone rounds them to 8 bits: it has a QLinearSoftmax); each softmax's weights are
        # quantised for p·v (the column's after the × 0/1 that leaves the own value out) and
        # read in float for the log-sum-exp (its ReduceMax)
        assert kernels["MatMulIntegerToFloat"] == 24 and kernels["QLinearMatMul"] == 0
        assert plain_kernels["QLinearMatMul"] == 24 and plain_from["MatMul"] == 24
        assert quantised_from["MatMul"] == 0 and quantised_from["Exp"] == 0
        assert quantised_from["Softmax"] == 12 and kernels["Softmax"] == 12
        assert quantised_from["Mul"] == 12  # 6 γ·(…), 6 column weights × the 0/1 matrix
    if name == "fpn_r18_ifa":
        assert kernels["QGemm"] == 4 and quantised_from["Sin"] == quantised_from["Cos"] == 3
        assert plain_from["MatMul"] > quantised_from["MatMul"]  # the phases were quantised
    if name == "fpn_r18_gum":
        taps = [n for n in graph.node if n.op_type == "Gather"
                and maker(n.input[0]) == "DequantizeLinear"]
        assert len(taps) == 12  # four taps per GUM, gathered as 8-bit rows
        assert kernels["QLinearMul"] >= 12  # tap × weight in int8
    if name == "fpn_r18_fast_attention":
        # K̂ᵀV and Q̂·(…) products in int8 (the second from int8 inputs to float)
        assert kernels["QLinearMatMul"] + kernels["MatMulIntegerToFloat"] == 6


def test_int8_logits_stay_close_to_fp32(quantised):
    name, _, _, files = quantised
    changed, relative = files[True][3][SIZE]
    plain_changed, plain_relative = files[False][3][SIZE]
    assert changed <= MAX_CHANGED and relative <= MAX_RELATIVE, (changed, relative)
    assert relative <= 1.05 * plain_relative  # never worse than the quantiser's placement


def test_int8_file_stays_close_at_a_size_it_was_not_calibrated_at(quantised):
    """Image-independent arithmetic (sampling positions, cell indices, phases) grows with the
    size; quantised with ranges calibrated at SIZE it saturates at a larger one."""
    name, _, _, files = quantised
    changed, relative = files[True][3][OTHER]
    plain_changed, plain_relative = files[False][3][OTHER]
    assert changed <= MAX_CHANGED and relative <= MAX_RELATIVE, (changed, relative)
    if name == "fpn_r18_gum":  # GUM's positions quantised: most labels change
        assert plain_changed > 0.2 and plain_relative > 5 * relative, (plain_changed, relative)
