"""OpenVINO's compiler crashes (SIGSEGV) on a requantised Concat: a minimal ONNX graph.

Why the int8 files of ``pidnet_s`` and ``ddrnet23_slim`` did not compile in OpenVINO 2026.4
(docs/deploy.md, "OpenVINO's compiler crash"). Bisected over the nodes of their int8 QDQ exports,
the first prefix that crashes ends after their pyramid pooling's pre-activation compression,
``Concat → Q/DQ → BatchNormalization → Relu → Q``. The graph here (``onnx.helper``, no rtseg
code) keeps only what the crash needs::

    x0, x1 (float) ─ Concat ─ QuantizeLinear/DequantizeLinear (uint8, zero point 123)
      ─ QuantizeLinear (uint8, zero point 0) ─ y

and each variation changes one thing. OpenVINO compiles every graph in a child process
(:func:`rtseg.deploy.runtimes.openvino_compiles`: a crash must not end this one)::

    python -m tools.openvino_concat_crash

rtseg's quantiser avoids the pattern: a ``BatchNormalization`` stays float (ONNX Runtime has
no int8 kernel for it; ``rtseg.deploy.qdq_placement.NO_INT8_KERNEL``), and the Concat that
only it reads stays float with it, so no Q/DQ pair follows the Concat.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Graph:
    """The graph's properties; the defaults make the crashing graph."""

    channels: int = 4
    zero_point: int = 123  # of the Q/DQ pair after the Concat
    concat: bool = True  # False: an Add of the two inputs instead
    between: str = ""  # an op between the pair and the last Q ("Relu"), or none
    last_q: bool = True  # False: the DequantizeLinear output is the graph output


VARIATIONS: list[tuple[str, dict[str, Any]]] = [
    ("the trigger", {}),
    ("Relu between the pair and the last Q", {"between": "Relu"}),
    ("zero point 0 after the Concat", {"zero_point": 0}),
    ("Add instead of Concat", {"concat": False}),
    ("no last Q (float output)", {"last_q": False}),
]
CRASHES = {"the trigger", "Relu between the pair and the last Q"}


def build(g: Graph) -> Any:
    """The ONNX model of ``g`` (opset 17, inputs 1×C×2×2 float)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, g.channels, 2, 2]
    inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, shape) for i in (0, 1)]
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "s1"),
             numpy_helper.from_array(np.array(g.zero_point, np.uint8), "z1"),
             numpy_helper.from_array(np.array(0.25, np.float32), "s2"),
             numpy_helper.from_array(np.array(0, np.uint8), "z2")]
    nodes = [helper.make_node("Concat", ["x0", "x1"], ["m"], axis=1) if g.concat
             else helper.make_node("Add", ["x0", "x1"], ["m"]),
             helper.make_node("QuantizeLinear", ["m", "s1", "z1"], ["mq"]),
             helper.make_node("DequantizeLinear", ["mq", "s1", "z1"], ["md"])]
    last = "md"
    if g.between:
        nodes.append(helper.make_node(g.between, [last], ["b"]))
        last = "b"
    out_type = TensorProto.FLOAT
    if g.last_q:
        nodes.append(helper.make_node("QuantizeLinear", [last, "s2", "z2"], ["y"]))
        out_type = TensorProto.UINT8
    else:
        nodes.append(helper.make_node("Identity", [last], ["y"]))
    out_shape = [1, g.channels * (2 if g.concat else 1), 2, 2]
    graph = helper.make_graph(nodes, "concat_requantised", inputs,
                              [helper.make_tensor_value_info("y", out_type, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def compiles(g: Graph) -> str:
    """OpenVINO's outcome for ``g``: ``"compiles"`` or ``"fails: …"``."""
    import onnx

    from rtseg.deploy.runtimes import openvino_compiles

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.onnx"
        onnx.save(build(g), str(path))
        return openvino_compiles(path)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    import openvino

    print(f"OpenVINO {openvino.__version__}")
    for name, change in VARIATIONS:
        print(f"{name}: {compiles(replace(Graph(), **change))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
