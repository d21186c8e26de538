"""int8 placement rules (issue 30, item 3) on small hand-built graphs: a softmax attention keeps
its softmax float and its products int8, a shape is read from the quantised tensor, an
image-independent phase feeding ``Sin`` is not rounded, a no-op ``Cast`` does not make the
chain before it float, a pre-activation BatchNormalization stays float with the Concat before
it. The guided networks themselves: tests/test_quantize_guided.py."""

from __future__ import annotations

import importlib.util
from collections import Counter

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the int8 path needs onnx")
ort = pytest.importorskip("onnxruntime", reason="the int8 path needs onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rtseg.deploy.qdq_placement import drop_noop_casts, float_islands  # noqa: E402
from rtseg.deploy.quantize import quantize_int8  # noqa: E402


def ort_kernels(path, tmp_path) -> Counter:
    """Node types of ONNX Runtime's optimised graph of ``path`` (its QDQ fusions applied: the
    kernels it runs, before the CPU layout changes)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node)


def _attention_model() -> onnx.ModelProto:
    """x (1×16×8) → q, k, v products; energies q·kᵀ plus an image-independent 0/−inf mask
    (Where over Range, as GAI's export); softmax by ReduceMax, Sub, Exp, ReduceSum, Div; p·v;
    an output product. Its size is read by a Shape, as the FPN reads a lateral's size."""
    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    consts = [w("wq", 8, 4), w("wk", 8, 4), w("wv", 8, 8), w("wo", 8, 8),
              numpy_helper.from_array(np.array(0, np.int64), "zero"),
              numpy_helper.from_array(np.array(1, np.int64), "one"),
              numpy_helper.from_array(np.array([1], np.int64), "ax1"),
              numpy_helper.from_array(np.array([-1], np.int64), "axm1"),
              numpy_helper.from_array(np.array(float("-inf"), np.float32), "ninf"),
              numpy_helper.from_array(np.array(0.0, np.float32), "fzero")]
    n = helper.make_node
    nodes = [
        n("MatMul", ["x", "wq"], ["q"]), n("MatMul", ["x", "wk"], ["k"]),
        n("MatMul", ["x", "wv"], ["v"]), n("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        n("MatMul", ["q", "kt"], ["e"]),
        n("Shape", ["x"], ["xs"]), n("Gather", ["xs", "one"], ["len"], axis=0),
        n("Range", ["zero", "len", "one"], ["idx"]),
        n("Unsqueeze", ["idx", "ax1"], ["col"]), n("Unsqueeze", ["idx", "zero"], ["row"]),
        n("Equal", ["col", "row"], ["eye"]), n("Where", ["eye", "ninf", "fzero"], ["mask"]),
        n("Add", ["e", "mask"], ["em"]),
        n("ReduceMax", ["em"], ["m"], axes=[-1], keepdims=1), n("Sub", ["em", "m"], ["s"]),
        n("Exp", ["s"], ["p"]), n("ReduceSum", ["p", "axm1"], ["z"], keepdims=1),
        n("MatMul", ["p", "v"], ["pv"]), n("Div", ["pv", "z"], ["a"]),
        n("MatMul", ["a", "wo"], ["o"]), n("Add", ["o", "x"], ["y0"]),
        n("Shape", ["y0"], ["ys"]), n("Reshape", ["y0", "ys"], ["y"])]
    graph = helper.make_graph(
        nodes, "attention", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8])], consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _quantised(tmp_path, model, islands=True):
    src, dst = tmp_path / "m.onnx", tmp_path / f"m.{islands}.int8.onnx"
    onnx.save(model, str(src))
    rng = np.random.default_rng(1)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    info = quantize_int8(src, dst, [rng.standard_normal(shape).astype(np.float32)
                                    for _ in range(8)], islands=islands)
    return src, dst, info, onnx.load(str(dst)).graph


def _reads(graph):
    made = {o: node for node in graph.node for o in node.output}
    return lambda node: [made[i].op_type if i in made else "input" for i in node.input if i]


def test_softmax_stays_float_and_its_products_run_int8(tmp_path):
    src, dst, info, graph = _quantised(tmp_path, _attention_model())
    reads = _reads(graph)
    for node in graph.node:
        if node.op_type in ("Add", "ReduceMax", "Sub", "Exp", "ReduceSum", "Div", "Where"):
            assert "DequantizeLinear" not in reads(node), node.op_type  # never rounded
        if node.op_type == "MatMul":
            assert set(reads(node)) == {"DequantizeLinear"}, node.input  # int8 inputs
        if node.op_type == "Shape":
            assert reads(node) != ["DequantizeLinear"]  # no dequantised copy to read a size
    quantised_tensors = {q.input[0] for q in graph.node if q.op_type == "QuantizeLinear"}
    assert "mask" not in quantised_tensors and "em" not in quantised_tensors
    assert "e" not in quantised_tensors and "p" in quantised_tensors  # p·v reads p in int8
    kernels = ort_kernels(dst, tmp_path)
    assert kernels["MatMulIntegerToFloat"] + kernels["QLinearMatMul"] == 6  # all six
    assert kernels["MatMul"] == kernels["FusedMatMul"] == 0
    assert info["islands"]["product output left float"] >= 2  # e and p·v: no Q/DQ after

    # the quantiser's own placement rounds the energies and the −inf mask to 8 bits
    _, plain, _, plain_graph = _quantised(tmp_path, _attention_model(), islands=False)
    assert {"e", "mask"} <= {q.input[0] for q in plain_graph.node if q.op_type == "QuantizeLinear"}
    x = np.random.default_rng(2).standard_normal((1, 16, 8)).astype(np.float32)
    ref, new, old = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                     .run(None, {"x": x})[0] for p in (src, dst, plain))
    assert np.abs(new - ref).max() < 0.5 * np.abs(old - ref).max()


def test_image_independent_phases_stay_float(tmp_path):
    """IFA's codes: δ from the size, δ·M (a MatMul), Sin and Cos, then a product with weights
    (int8). The phase is never quantised; the codes the product reads are."""
    rng = np.random.default_rng(0)
    n = helper.make_node
    freq = (20 * rng.standard_normal((1, 6))).astype(np.float32)  # phases of tens of radians
    consts = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
              numpy_helper.from_array(np.array(1, np.int64), "one"),
              numpy_helper.from_array(np.array([1], np.int64), "ax1"),
              numpy_helper.from_array(freq, "freq"),
              numpy_helper.from_array(rng.standard_normal((12, 8)).astype(np.float32), "wc"),
              numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "wx")]
    nodes = [n("Shape", ["x"], ["xs"]), n("Gather", ["xs", "one"], ["len"], axis=0),
             n("Range", ["zero", "len", "one"], ["idx"]), n("Cast", ["idx"], ["fidx"], to=1),
             n("Unsqueeze", ["fidx", "ax1"], ["d"]), n("MatMul", ["d", "freq"], ["phase"]),
             n("Sin", ["phase"], ["s"]), n("Cos", ["phase"], ["c"]),
             n("Concat", ["s", "c"], ["codes"], axis=-1), n("MatMul", ["codes", "wc"], ["pos"]),
             n("MatMul", ["x", "wx"], ["h"]), n("Add", ["h", "pos"], ["y0"]),
             n("Relu", ["y0"], ["y1"]), n("MatMul", ["y1", "wx"], ["y"])]
    graph = helper.make_graph(
        nodes, "codes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8])], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    _, _, _, q = _quantised(tmp_path, model)
    quantised_tensors = {node.input[0] for node in q.node if node.op_type == "QuantizeLinear"}
    assert "phase" not in quantised_tensors and "d" not in quantised_tensors
    assert {"x", "codes", "h"} <= quantised_tensors  # the products' inputs (codes: ±1)
    named = onnx.load(str(tmp_path / "m.onnx"))
    for i, node in enumerate(named.graph.node):
        node.name = f"n{i}"
    kept = float_islands(named)
    assert {"n5", "n6", "n7"} <= kept and not {"n9", "n10", "n13"} & kept  # δ·M, Sin, Cos
    _, _, _, plain = _quantised(tmp_path, model, islands=False)
    assert "phase" in {node.input[0] for node in plain.node if node.op_type == "QuantizeLinear"}


def test_a_standalone_batchnorm_stays_float_with_the_concat_it_reads(tmp_path):
    """DDRNet's and PIDNet's pyramid pooling: Concat → BN → ReLU → Conv. ONNX Runtime has no
    int8 BatchNormalization, so neither it nor the Concat that only it reads is quantised;
    the ReLU output the last convolution reads is. OpenVINO compiles the result (with a Q/DQ
    pair after the Concat it crashes: tools/openvino_concat_crash.py)."""
    rng = np.random.default_rng(0)
    n = helper.make_node

    def const(name, *shape, low=-1.0, high=1.0):
        return numpy_helper.from_array(rng.uniform(low, high, shape).astype(np.float32), name)

    consts = [const("wa", 4, 3, 1, 1), const("wb", 4, 3, 1, 1), const("wc", 2, 8, 1, 1),
              const("g", 8, low=0.5, high=1.5), const("b", 8), const("m", 8),
              const("v", 8, low=0.5, high=1.5)]
    nodes = [n("Conv", ["x", "wa"], ["a"]), n("Conv", ["x", "wb"], ["bb"]),
             n("Concat", ["a", "bb"], ["cat"], axis=1),
             n("BatchNormalization", ["cat", "g", "b", "m", "v"], ["bn"]),
             n("Relu", ["bn"], ["r"]), n("Conv", ["r", "wc"], ["y"])]
    graph = helper.make_graph(
        nodes, "preact", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 8])], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    src, dst, info, q = _quantised(tmp_path, model)
    reads = _reads(q)
    quantised_tensors = {node.input[0] for node in q.node if node.op_type == "QuantizeLinear"}
    assert "cat" not in quantised_tensors and "bn" not in quantised_tensors
    assert {"x", "r"} <= quantised_tensors
    for node in q.node:
        if node.op_type == "Conv":
            assert reads(node)[:2] == ["DequantizeLinear", "DequantizeLinear"], node.input
        if node.op_type == "BatchNormalization":
            assert reads(node) == ["Concat", "input", "input", "input", "input"]
    assert info["islands"]["float"] == {"BatchNormalization": 1, "Concat": 1}
    _, _, _, plain = _quantised(tmp_path, model, islands=False)
    assert "cat" in {node.input[0] for node in plain.node if node.op_type == "QuantizeLinear"}
    x = rng.standard_normal((1, 3, 6, 8)).astype(np.float32)
    ref, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                .run(None, {"x": x})[0] for p in (src, dst))
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()
    if importlib.util.find_spec("openvino") is not None:
        from rtseg.deploy.runtimes import openvino_compiles

        assert openvino_compiles(dst) == "compiles"


def test_a_noop_cast_is_dropped_before_quantising():
    n = helper.make_node
    w = numpy_helper.from_array(np.eye(8, dtype=np.float32), "w")
    nodes = [n("MatMul", ["x", "w"], ["h"]), n("Cast", ["h"], ["hc"], to=1),
             n("Cast", ["hc"], ["hi"], to=7), n("Cast", ["hi"], ["y"], to=1)]
    graph = helper.make_graph(
        nodes, "casts", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert drop_noop_casts(model) == 1  # float → float; float → int64 and back are real
    assert [(node.op_type, list(node.input)) for node in model.graph.node][:2] == [
        ("MatMul", ["x", "w"]), ("Cast", ["h"])]
