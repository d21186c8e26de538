"""OpenVINO applies channel 0's bias to every channel: a minimal ONNX graph; a scan of int8 files.

Why OpenVINO breaks the int8 files of ``fpn_r18_gum`` and ``fpn_r18_ifa`` (docs/deploy.md, "What
breaks in OpenVINO"). The graph (``onnx.helper``, random weights, no rtseg code) is the pattern
around ``lateral.0`` in their int8 QDQ exports::

    x ─ QuantizeLinear/DequantizeLinear (uint8) ─ Conv 1×1 (int8 weights per channel, int32 bias)
      ─ QuantizeLinear/DequantizeLinear (uint8, zero point 106) ─ Relu ─ y            (output)
    y ─ Shape ─ Gather(2), Gather(3) (scalars) ─ Unsqueeze ─ Concat ─┐
    coarse ─ Shape ─ Slice(0:2) ──────────────────────────────────────┴ sizes ─ Resize(coarse) ─ up

with dynamic batch, height and width, as ``rtseg export`` writes them (the scalar gathers are
how PyTorch exports ``F.interpolate(coarse, size=y.shape[-2:])``). ``y`` is run in ONNX Runtime
and in OpenVINO's CPU plugin (``INFERENCE_PRECISION_HINT=f32``, as ``rtseg.load`` opens a file)
and compared with a numpy float64 reference that quantises as ONNX does (round half to even,
saturate). Errors are in quantisation steps of ``y`` (its scale); one step is rounding.
``bias-0 ref`` is the distance to the reference computed with channel 0's bias added to every
channel: one step there and many from the true reference means the runtime used channel 0's
bias for all channels.

What OpenVINO does (its compiled graph, ``CompiledModel.get_runtime_model()``): it moves the
``Shape`` up onto the convolution's output, so that output has two readers and the plugin does
not fuse the bias into the convolution; the bias ``Add`` is folded into the ``FakeQuantize``
of ``y``'s QuantizeLinear instead, and that ``FakeQuantize`` applies channel 0's value to every
channel. ``--sweep`` changes one property of the graph at a time::

    python -m tools.openvino_int8_repro --sweep

``--scan`` lists, in any ONNX file, the convolutions whose bias OpenVINO folds into a
``FakeQuantize`` (the signature above; it reads OpenVINO's compiled graph only, so random
weights do)::

    python -m tools.openvino_int8_repro --scan model.int8.onnx [--static H W]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Graph:
    """The properties of the test graph; the defaults are the failing pattern."""

    static: bool = False          # fixed input shapes instead of dynamic batch, H, W
    sizes: str = "scalar"         # how y's H, W reach Resize: scalar | vector (one Gather) |
    #                               slice | gather1d | slices | output (scalar, no Resize) | none
    input_qdq: bool = True        # x through QuantizeLinear/DequantizeLinear
    zero_point: int = 106         # of y's QuantizeLinear
    activation: str = "uint8"     # uint8 | int8 for y's QuantizeLinear
    per_channel: bool = True      # int8 weights per output channel, else per tensor
    relu: str = "after"           # after (Q/DQ → Relu) | before (Relu → Q/DQ) | none
    bias: bool = True             # the Conv has a bias
    int8_weights: bool = True     # weights through DequantizeLinear, else float
    also: str = ""                # another reader of y: "" | conv | add
    conv_output: bool = False     # the bias as its own Add after the Conv, and the Conv's output
    #                               (before that Add) a graph output too


VARIATIONS = [
    ("as in fpn_r18_gum's int8 lateral.0", {}),
    ("static input shapes", {"static": True}),
    ("H, W read by one Gather([2, 3])", {"sizes": "vector"}),
    ("H, W read by one Slice(2:4)", {"sizes": "slice"}),
    ("H, W by Gather([2]), Gather([3]), Concat", {"sizes": "gather1d"}),
    ("H, W by Slice(2:3), Slice(3:4), Concat", {"sizes": "slices"}),
    ("H, W an output, no Resize", {"sizes": "output"}),
    ("no Shape reads y", {"sizes": "none"}),
    ("float x (no Q/DQ before the Conv)", {"input_qdq": False}),
    ("activation zero point 0", {"zero_point": 0}),
    ("int8 activations (zero point -22)", {"activation": "int8", "zero_point": 106 - 128}),
    ("per-tensor weights", {"per_channel": False}),
    ("Relu before the Q/DQ", {"relu": "before"}),
    ("no Relu", {"relu": "none"}),
    ("Conv without bias", {"bias": False}),
    ("float Conv weights", {"int8_weights": False}),
    ("a float Conv also reads y", {"also": "conv"}),
    ("an Add also reads y", {"also": "add"}),
    ("no Shape; Conv, bias Add, Conv out an output", {"sizes": "none", "conv_output": True}),
    ("the same, static input shapes", {"sizes": "none", "conv_output": True, "static": True}),
    ("the same, float x and weights, no Relu", {"sizes": "none", "conv_output": True,
                                                "input_qdq": False, "int8_weights": False,
                                                "relu": "none"}),
]

C_IN, C_MID, C_COARSE = 64, 128, 8


def _q(v: np.ndarray, scale: float, zp: int, lo: int, hi: int) -> np.ndarray:
    """ONNX QuantizeLinear: round half to even, saturate."""
    return np.clip(np.rint(v / scale) + zp, lo, hi)


def build(g: Graph, size: tuple[int, int] = (32, 64), seed: int = 0):
    """The ONNX model of ``g``, its feeds, y's reference, y's reference with channel 0's bias
    added to every channel, and y's quantisation step."""
    import onnx
    from onnx import TensorProto
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(seed)
    h, w = size
    x = np.abs(rng.normal(0, 1.5, (1, C_IN, h, w))).astype(np.float32)
    coarse = rng.normal(0, 1, (1, C_COARSE, h // 2, w // 2)).astype(np.float32)
    w1 = rng.normal(0, 0.15, (C_MID, C_IN, 1, 1)).astype(np.float32)
    b1 = rng.normal(0, 0.5, (C_MID,)).astype(np.float32)
    other = rng.normal(0, 1, (1, C_MID, h, w)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (C_MID, C_MID, 1, 1)).astype(np.float32)

    s_x = np.float32(x.max() / 255)
    inits, nodes = [], []
    if g.input_qdq:
        xd = _q(x, s_x, 0, 0, 255) * np.float64(s_x)
        inits += [nh.from_array(s_x, "s_x"), nh.from_array(np.uint8(0), "z_x")]
        nodes += [oh.make_node("QuantizeLinear", ["x", "s_x", "z_x"], ["xq"], name="x_q"),
                  oh.make_node("DequantizeLinear", ["xq", "s_x", "z_x"], ["xd"], name="x_dq")]
    else:
        xd = x.astype(np.float64)
    conv_in = ["xd" if g.input_qdq else "x", "w1"]
    if g.int8_weights:
        amax = (np.abs(w1).max(axis=(1, 2, 3)) if g.per_channel
                else np.full(C_MID, np.abs(w1).max()))
        s_w = (amax / 127).astype(np.float32)
        w1q = _q(w1, s_w[:, None, None, None], 0, -127, 127).astype(np.int8)
        wd = w1q.astype(np.float64) * s_w[:, None, None, None]
        inits += [nh.from_array(w1q, "w1q"), nh.from_array(s_w, "s_w"),
                  nh.from_array(np.zeros(C_MID, np.int8), "z_w")]
        nodes.append(oh.make_node("DequantizeLinear", ["w1q", "s_w", "z_w"], ["w1"], axis=0,
                                  name="w_dq"))
    else:
        s_w = np.ones(C_MID, np.float32)
        wd = w1.astype(np.float64)
        inits.append(nh.from_array(w1, "w1"))
    bd = np.zeros(C_MID)
    if g.bias:
        if g.int8_weights and g.input_qdq:  # int32 bias at the input scale × weight scale
            s_b = (s_x * s_w).astype(np.float32)
            bq = np.rint(b1 / s_b).astype(np.int32)
            bd = bq.astype(np.float64) * s_b
            inits += [nh.from_array(bq, "bq"), nh.from_array(s_b, "s_b"),
                      nh.from_array(np.zeros(C_MID, np.int32), "z_b")]
            nodes.append(oh.make_node("DequantizeLinear", ["bq", "s_b", "z_b"], ["b1"], axis=0,
                                      name="b_dq"))
        else:
            bd = b1.astype(np.float64)
            inits.append(nh.from_array(b1, "b1"))
        conv_in.append("b1")
    if g.conv_output:  # Conv, then the bias as an Add; the Conv's output read twice
        nodes.append(oh.make_node("Conv", conv_in[:2], ["c"], kernel_shape=[1, 1], name="conv"))
        inits.append(nh.from_array(bd.astype(np.float32).reshape(C_MID, 1, 1), "b1c"))
        nodes.append(oh.make_node("Add", ["c", "b1c"], ["y1"], name="bias"))
    else:
        nodes.append(oh.make_node("Conv", conv_in, ["y1"], kernel_shape=[1, 1], name="conv"))

    lo, hi = (0, 255) if g.activation == "uint8" else (-128, 127)
    zp = g.zero_point

    def conv(bias: np.ndarray) -> np.ndarray:
        v = np.einsum("oc,bchw->bohw", wd[:, :, 0, 0], xd) + bias[None, :, None, None]
        return np.maximum(v, 0) if g.relu == "before" else v

    pre = conv(bd)  # the scale: the range the zero point leaves on either side
    rmin, rmax = min(float(pre.min()), 0.0), max(float(pre.max()), 0.0)
    s_y = np.float32(max(rmax / (hi - zp), -rmin / (zp - lo) if zp > lo else 0.0))

    def reference(bias: np.ndarray) -> np.ndarray:
        v = (_q(conv(bias), s_y, zp, lo, hi) - zp) * np.float64(s_y)
        return np.maximum(v, 0) if g.relu == "after" else v

    act = np.uint8 if g.activation == "uint8" else np.int8
    inits += [nh.from_array(s_y, "s_y"), nh.from_array(act(zp), "z_y")]
    t = "y1"
    if g.relu == "before":
        nodes.append(oh.make_node("Relu", [t], ["y1r"], name="relu"))
        t = "y1r"
    nodes += [oh.make_node("QuantizeLinear", [t, "s_y", "z_y"], ["yq"], name="y_q"),
              oh.make_node("DequantizeLinear", ["yq", "s_y", "z_y"],
                           ["yd" if g.relu == "after" else "y"], name="y_dq")]
    if g.relu == "after":
        nodes.append(oh.make_node("Relu", ["yd"], ["y"], name="relu"))

    def info(name: str, c: int, hh: int, ww: int, tag: str = "") -> onnx.ValueInfoProto:
        dims = [1, c, hh, ww] if g.static else ["batch", c, f"h{tag}", f"w{tag}"]
        return oh.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    inputs, outputs, feeds = [info("x", C_IN, h, w)], [info("y", C_MID, h, w)], {"x": x}
    if g.sizes != "none":
        inputs.append(info("coarse", C_COARSE, h // 2, w // 2, "c"))
        feeds["coarse"] = coarse
        inits += [nh.from_array(np.array(v, np.int64), n) for n, v in
                  [("i2", 2), ("i3", 3), ("ax0", [0]), ("i23", [2, 3]), ("s0", [0]),
                   ("s2", [2]), ("s3", [3]), ("s4", [4])]]
        nodes += [oh.make_node("Shape", ["y"], ["ys"], name="y_shape"),
                  oh.make_node("Shape", ["coarse"], ["cs"], name="coarse_shape"),
                  oh.make_node("Slice", ["cs", "s0", "s2", "s0"], ["nc"], name="nc")]
        if g.sizes in ("scalar", "output"):
            nodes += [oh.make_node("Gather", ["ys", "i2"], ["yh"], axis=0, name="gh"),
                      oh.make_node("Gather", ["ys", "i3"], ["yw"], axis=0, name="gw"),
                      oh.make_node("Unsqueeze", ["yh", "ax0"], ["yh1"], name="uh"),
                      oh.make_node("Unsqueeze", ["yw", "ax0"], ["yw1"], name="uw"),
                      oh.make_node("Concat", ["yh1", "yw1"], ["hw"], axis=0, name="hw")]
        elif g.sizes == "gather1d":
            nodes += [oh.make_node("Gather", ["ys", "s2"], ["yh1"], axis=0, name="gh"),
                      oh.make_node("Gather", ["ys", "s3"], ["yw1"], axis=0, name="gw"),
                      oh.make_node("Concat", ["yh1", "yw1"], ["hw"], axis=0, name="hw")]
        elif g.sizes == "slices":
            nodes += [oh.make_node("Slice", ["ys", "s2", "s3", "s0"], ["yh1"], name="sh"),
                      oh.make_node("Slice", ["ys", "s3", "s4", "s0"], ["yw1"], name="sw"),
                      oh.make_node("Concat", ["yh1", "yw1"], ["hw"], axis=0, name="hw")]
        elif g.sizes == "vector":
            nodes.append(oh.make_node("Gather", ["ys", "i23"], ["hw"], axis=0, name="ghw"))
        else:
            nodes.append(oh.make_node("Slice", ["ys", "s2", "s4", "s0"], ["hw"], name="shw"))
        nodes.append(oh.make_node("Concat", ["nc", "hw"], ["sizes"], axis=0, name="sizes"))
        if g.sizes == "output":
            outputs.append(oh.make_tensor_value_info("sizes", TensorProto.INT64, [4]))
        else:
            nodes.append(oh.make_node("Resize", ["coarse", "", "", "sizes"], ["up"],
                                      mode="nearest", name="resize"))
            outputs.append(info("up", C_COARSE, h, w))
    if g.also == "conv":
        inits.append(nh.from_array(w2, "w2"))
        nodes.append(oh.make_node("Conv", ["y", "w2"], ["z"], kernel_shape=[1, 1], name="conv2"))
    elif g.also == "add":
        inits.append(nh.from_array(other, "other"))
        nodes.append(oh.make_node("Add", ["y", "other"], ["z"], name="add"))
    if g.also:
        outputs.append(info("z", C_MID, h, w))
    if g.conv_output:
        outputs.append(info("c", C_MID, h, w))
    model = oh.make_model(oh.make_graph(nodes, "repro", inputs, outputs, inits),
                          opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, feeds, reference(bd), reference(np.full(C_MID, bd[0])), float(s_y)


def run(g: Graph, threads: int = 1, runtimes: tuple[str, ...] = ("onnxruntime", "openvino")
        ) -> dict[str, float]:
    """y's errors in quantisation steps: ``ort`` and ``ov`` (max |y - reference|), ``ov_off``
    (% of y's elements more than one step off in OpenVINO), ``ov_bias0`` (max |y - the
    channel-0-bias reference| in OpenVINO); only the runtimes asked for."""
    import onnx

    model, feeds, ref, ref_bias0, step = build(g)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "repro.onnx")
        onnx.save(model, path)
        if "onnxruntime" in runtimes:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.log_severity_level = 3
            y = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"]).run(
                ["y"], feeds)[0]
            out["ort"] = float(np.abs(y - ref).max()) / step
        if "openvino" in runtimes:
            import openvino as ov

            compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                             "INFERENCE_NUM_THREADS": threads})
            y = compiled([feeds[i.get_any_name()] for i in compiled.inputs])[compiled.output("y")]
            out["ov"] = float(np.abs(y - ref).max()) / step
            out["ov_off"] = 100.0 * float((np.abs(y - ref) > 1.01 * step).mean())
            out["ov_bias0"] = float(np.abs(y - ref_bias0).max()) / step
    return out


def scan(path: str | Path, static: tuple[int, int] | None = None,
         threads: int = 1) -> list[tuple[str, list[str]]]:
    """The convolutions of the ONNX file at ``path`` whose bias OpenVINO folds into a
    FakeQuantize: ``(Conv name, the runtime layer types that read its output)`` each.

    OpenVINO imports an ONNX ``Conv`` with a bias as a Convolution ``NAME/WithoutBiases`` and an
    Add ``NAME``; the CPU plugin normally fuses the Add into the Convolution. Listed: the biased
    Convs whose ``NAME/WithoutBiases`` is in the compiled graph, whose Add ``NAME`` is in none of
    its layers, and whose output a FakeQuantize reads (the module doc). ``static``: reshape the
    input to 1×3×H×W first.
    """
    import onnx
    import openvino as ov

    graph = onnx.load(str(path), load_external_data=False).graph
    biased = {n.name for n in graph.node if n.op_type == "Conv" and len(n.input) > 2
              and n.input[2]}
    core = ov.Core()
    model = core.read_model(str(path))
    if static:
        model.reshape({model.inputs[0].get_any_name(): [1, 3, *static]})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                 "INFERENCE_NUM_THREADS": threads})
    ops = compiled.get_runtime_model().get_ordered_ops()

    def info(op, key: str) -> str:
        return op.get_rt_info()[key].astype(str)

    present = {name for op in ops for name in info(op, "originalLayersNames").split(",")}
    found = []
    for op in ops:
        if info(op, "layerType") != "Convolution":
            continue
        for name in info(op, "originalLayersNames").split(","):
            conv = name.removesuffix("/WithoutBiases")
            if conv == name or conv not in biased or conv in present:
                continue
            readers = sorted(info(t.get_node(), "layerType") for out in op.outputs()
                             for t in out.get_target_inputs())
            if "FakeQuantize" in readers:
                found.append((conv, readers))
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sweep", action="store_true", help="change one property at a time")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--save", type=Path, help="also write the failing graph to this .onnx file")
    p.add_argument("--scan", nargs="+", type=Path, metavar="FILE",
                   help="instead: list the convolutions of these ONNX files whose bias OpenVINO "
                        "folds into a FakeQuantize")
    p.add_argument("--static", nargs=2, type=int, metavar=("H", "W"),
                   help="with --scan: reshape each file to 1×3×H×W first")
    return p.parse_args(argv)


def _scan(files: list[Path], static: tuple[int, int] | None, threads: int) -> None:
    shape = f"static 1×3×{static[0]}×{static[1]}" if static else "dynamic"
    for path in files:
        try:
            found = scan(path, static, threads)
        except RuntimeError as e:  # OpenVINO's own errors
            line = [x.strip() for x in str(e).splitlines() if x.strip()][-1]
            print(f"{path} ({shape}): OpenVINO cannot compile it: {line}")
            continue
        print(f"{path} ({shape}): {len(found)} Conv whose bias OpenVINO folds into a FakeQuantize")
        for conv, readers in found:
            print(f"  {conv} (read by {', '.join(readers)})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import onnx
    import onnxruntime as ort
    import openvino as ov

    print(f"OpenVINO {ov.__version__}, ONNX Runtime {ort.__version__}")
    if args.scan:
        _scan(args.scan, tuple(args.static) if args.static else None, args.threads)
        return 0
    if args.save:
        onnx.save(build(Graph())[0], str(args.save))
    print(f"{'graph':44} {'ORT':>5} {'OpenVINO':>9} {'OV >1 step':>11} {'OV to bias-0 ref':>17}")
    for name, change in VARIATIONS if args.sweep else VARIATIONS[:1]:
        r = run(replace(Graph(), **change), args.threads)
        print(f"{name:44} {r['ort']:5.2f} {r['ov']:9.2f} {r['ov_off']:10.1f}% "
              f"{r['ov_bias0']:17.2f}", flush=True)
    print("(max |y - numpy reference| in quantisation steps of y; OV >1 step: the share of y's "
          "elements more than one step off; bias-0 ref: the reference with channel 0's bias "
          "on every channel)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
