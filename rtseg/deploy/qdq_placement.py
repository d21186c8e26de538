"""Graph rewrites around ONNX Runtime's quantiser: where the Q/DQ pairs of an int8 model go.

Left to itself the quantiser puts a Q/DQ pair on every input and output of every node it has an
int8 form for, so the tensors around a float island (a softmax's exponentials, GUM's
GridSample, IFA's sines) are quantised only to be dequantised again, rounded to 8 bits on the
way. :func:`float_islands` (before quantising) names the nodes to leave float and
:func:`tidy_qdq` (after) moves the pairs so that only what must be float is: products keep int8
inputs (their output stays float when only float nodes read it), a float node reads float
tensors, a ``Shape`` reads the quantised tensor. :func:`inline_constant_identities` and
:func:`drop_noop_casts` clean the exported graph first. Used by
:func:`rtseg.deploy.quantize.quantize_int8`; docs/deploy.md, "int8 of the guided upsamplers",
has the measurements.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


def inline_constant_identities(model: Any) -> int:
    """Replace every ``Identity`` of an initializer by a copy of that initializer; return how many.

    The exporter shares equal tensors and reads the second user's copy through an ``Identity``;
    the quantiser then sees a Conv bias that is not an initializer, leaves it float, and ONNX
    Runtime cannot fuse that Conv into an int8 kernel (10 of `gun`'s 39 convolutions ran in float,
    31 ms of its 201 ms int8 call at 512×1024).
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    dropped = [n for n in graph.node if n.op_type == "Identity" and n.input[0] in inits
               and n.output[0] not in outputs]
    for node in dropped:
        copy = numpy_helper.from_array(numpy_helper.to_array(inits[node.input[0]]), node.output[0])
        graph.initializer.append(copy)
        graph.node.remove(node)
    return len(dropped)


# Products with int8 kernels: their inputs are always quantised (the point of int8).
_PRODUCTS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
# Data movement: quantised when what they move is (ONNX Runtime then moves 8-bit values).
_MOVES = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Gather", "GatherElements",
          "Slice", "Split", "Concat", "Resize", "MaxPool", "Pad", "Expand"}
# Element-wise nodes the quantiser has int8 forms for.
_ELEMENTWISE = {"Add", "Mul", "Relu", "Clip", "LeakyRelu", "Sigmoid", "Where"}
# Line-wise nodes the quantiser has int8 forms for (``QLinearSoftmax``): left float when a
# float node reads them (see float_islands).
_LINEWISE = {"Softmax"}
# Products ONNX Runtime runs from int8 inputs to a float output (``MatMulIntegerToFloat``,
# ``QGemm`` without an output scale): no QuantizeLinear is needed after them.
FLOAT_OUT = {"MatMul", "Gemm"}
# Types the quantiser knows but ONNX Runtime has no int8 kernel for: it runs them in float
# between a DQ and a Q, so quantising around them only rounds. A standalone BatchNormalization
# (pre-activation BN → ReLU → Conv after a Concat: DDRNet's DAPPM, PIDNet's PAPPM) taken float
# also takes the Concat before it float, which OpenVINO 2026.4 needs: a Concat whose output is
# quantised with a zero point ≠ 0 and then quantised again without a product in between
# crashes its compiler (tools/openvino_concat_crash.py).
NO_INT8_KERNEL = {"BatchNormalization"}


def _quantisable() -> set[str]:
    """Operator types ONNX Runtime's quantiser places Q/DQ pairs around (its default list)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return set(QLinearOpsRegistry) | set(QDQRegistry)


def consumers(graph: Any) -> dict[str, list[Any]]:
    """Tensor name → the nodes of ``graph`` that read it."""
    readers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node)
    return readers


def float_islands(model: Any) -> set[str]:
    """Names of the nodes of the float ``model`` to leave in float when quantising it.

    ONNX Runtime's quantiser puts a Q/DQ pair on every input and output of every node of a
    type it knows, whatever the neighbours do. Around arithmetic that has no int8 kernel (a
    softmax's ``ReduceMax``/``Sub``/``Exp``/``ReduceSum``/``Div``, IFA's ``Sin``/``Cos``) that
    means quantising values only to dequantise them again, and rounding them to 8 bits on the
    way: the attention energies before the exponential, a −inf mask (quantised it is a finite
    number: GAI's first fast graph had one), IFA's phases before their sines, GUM's sampling
    positions (with ranges calibrated at one size, which saturate at a larger one). Left float
    here:

    * every node of a type the quantiser has no int8 form for, or ONNX Runtime no int8
      kernel (:data:`NO_INT8_KERNEL`: a ``BatchNormalization`` that no convolution absorbed);
    * arithmetic that does not depend on the image (computed from sizes and constants only:
      position grids and codes, masks); products (``MatMul``, ``Gemm``, ``Conv``) and data
      movement there follow the next rule (IFA's position ``Gemm`` on its codes keeps int8
      inputs, the ``MatMul`` that makes its phases for ``Sin`` and ``Cos`` does not);
    * element-wise and data-movement nodes (``Add``, ``Mul``, ``Transpose``, ``Resize``, …)
      whose every reader is float (or a graph output): quantising their output would only be
      undone;
    * element-wise nodes that read only float tensors and have a float reader besides int8
      ones (GAI's first exported graph: its exponentials × a 0/1 mask, summed in float and
      multiplied in int8): in
      float the float reader needs no dequantised copy, and the int8 readers get the
      quantised output all the same;
    * a ``Softmax`` with a float reader (GAI's exported attention reads each softmax's largest
      weight for its log-sum-exp): its weights reach that reader exact, not rounded to 8 bits
      and dequantised, and its energies are not rounded before the exponential; its int8
      readers (the weights × values product) get the quantised weights all the same;

    the last three repeated until nothing changes, so a chain feeding a float island joins it.

    Products that depend on the image are never left float for their neighbours: their
    inputs are quantised and :func:`tidy_qdq` drops the quantisation of an output that only
    float nodes read.
    """
    graph = model.graph
    known = _quantisable()
    readers = consumers(graph)
    outputs = {o.name for o in graph.output}
    live = {i.name for i in graph.input}  # tensors that depend on the image's values
    for node in graph.node:
        if node.op_type not in ("Shape", "Size") and any(i in live for i in node.input):
            live.update(node.output)
    depends = {n.name for n in graph.node if any(o in live for o in n.output)}
    floating = {n.name for n in graph.node if n.op_type not in known - NO_INT8_KERNEL
                or (n.op_type not in _PRODUCTS | _MOVES and n.name not in depends)}
    fixed = {n.name for n in graph.node if n.op_type in _PRODUCTS and n.name in depends}

    made = {o: n for n in graph.node for o in n.output}
    constant = {t.name for t in graph.initializer}

    def reads_float(node: Any) -> bool:
        used = [r for o in node.output for r in readers[o] if r.op_type != "Shape"]
        to_output = any(o in outputs for o in node.output)
        if (bool(used) or to_output) and all(r.name in floating for r in used):
            return True
        if node.op_type in _LINEWISE and any(r.name in floating for r in used):
            return True
        return (node.op_type in _ELEMENTWISE and any(r.name in floating for r in used)
                and all(i in constant or i not in made or made[i].name in floating
                        for i in node.input if i))

    changed = True
    while changed:
        changed = False
        for node in reversed(graph.node):
            if node.name in floating or node.name in fixed or not reads_float(node):
                continue
            floating.add(node.name)
            changed = True
    return {n for n in floating if n}


def drop_noop_casts(model: Any) -> int:
    """Remove every ``Cast`` to the type its input already has; return how many.

    The exporter writes ``x.to(dtype)`` as a ``Cast`` even when ``x`` has that type (GUM's
    sampling casts to the grid's dtype and back). ONNX Runtime drops such a node when it runs
    the model, but the quantiser sees a float operator there: a Q/DQ pair around it, or, with
    :func:`float_islands`, a float reader that makes the whole chain before it float.
    """
    import onnx

    graph = model.graph
    typed = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*typed.value_info, *typed.input, *typed.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    outputs = {o.name for o in graph.output}
    noop = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in outputs
            and types.get(n.input[0]) == next(a.i for a in n.attribute if a.name == "to")]
    for cast in noop:
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == cast.output[0]:
                    node.input[i] = cast.input[0]
        graph.node.remove(cast)
    return len(noop)


def tidy_qdq(model: Any, excluded: set[str]) -> dict[str, int]:
    """Drop the Q/DQ work the quantiser leaves around float nodes of the QDQ ``model``
    (in place); ``excluded``: the nodes it was told to leave float. Returns counts by kind.

    * A ``Shape`` reads the quantised tensor instead of a dequantised copy (same shape; ONNX
      Runtime otherwise dequantises a whole feature map to read its size).
    * A float node reading a dequantised copy of a tensor made by a float node (or the
      graph input) reads the tensor itself: no DQ pass, no rounding (GAI's ``ReduceMax`` of a
      softmax's weights while its ``MatMul`` reads them quantised; GUM's ``1 − fx`` while the
      blend's ``Mul`` reads ``fx`` quantised).
    * A ``MatMul``/``Gemm`` output read only by float nodes is not quantised at all: ONNX
      Runtime runs the product from int8 inputs to a float output (GAI's energies go
      straight from the int8 product into the softmax; IFA's phases were quantised).
    """
    graph = model.graph
    known = _quantisable()
    produced = {o: n for n in graph.node for o in n.output}
    initializers = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}

    dq_outputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}

    def runs_float(node: Any) -> bool:
        """True for a node ONNX Runtime runs in float: no int8 form, left float, or data
        movement of a tensor that is not quantised (its input no DequantizeLinear output)."""
        return (node.op_type not in known or node.name in excluded
                or (node.op_type in _MOVES and node.input[0] not in dq_outputs))

    counts: Counter = Counter()
    removed: list[Any] = []
    for q in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        source = q.input[0]
        if source in initializers:
            continue
        readers = consumers(graph)
        maker = produced.get(source)
        float_maker = maker is None or runs_float(maker)
        dqs = [d for d in readers[q.output[0]] if d.op_type == "DequantizeLinear"]
        if not dqs or any(d.output[0] in outputs for d in dqs):
            continue
        users = [(d, r) for d in dqs for r in readers[d.output[0]]]
        floats = [r for _, r in users if r.op_type != "Shape" and runs_float(r)]
        int8 = [r for _, r in users if r.op_type != "Shape" and not runs_float(r)]
        drop_pair = not int8 and maker is not None and maker.op_type in FLOAT_OUT
        for d, r in users:
            if r.op_type == "Shape":
                new, kind = q.output[0], "shape reads quantised tensor"
            elif r.op_type != "Shape" and runs_float(r) and (float_maker or drop_pair):
                new, kind = source, "float reader reads float tensor"
            else:
                continue
            for i, name in enumerate(r.input):
                if name == d.output[0]:
                    r.input[i] = new
            counts[kind] += 1
        if drop_pair and floats:
            counts["product output left float"] += 1
        readers = consumers(graph)
        unread = [d for d in dqs if not readers[d.output[0]]]
        removed += unread
        if len(unread) == len(dqs) and len(readers[q.output[0]]) == len(dqs):
            removed.append(q)
    for node in removed:
        graph.node.remove(node)
    counts["Q/DQ nodes removed"] = len(removed)
    used = {i for n in graph.node for i in n.input}
    for t in [t for t in graph.initializer if t.name not in used and t.name not in outputs]:
        graph.initializer.remove(t)  # the removed pairs' scales and zero points
    return dict(counts)
