"""Post-training int8 quantisation of an exported ONNX model with ONNX Runtime's tools.

Static QDQ quantisation (``onnxruntime.quantization.quantize_static``): weights int8 per output
channel (symmetric), activations uint8 per tensor, their ranges calibrated (MinMax) on real
training images given at the export size and normalised as in training. The QDQ format keeps
the graph runnable everywhere (a runtime without int8 kernels dequantises); ONNX Runtime fuses
``DequantizeLinear → Conv → QuantizeLinear`` into int8 convolutions (VNNI on this CPU).

Not every node is quantised: ONNX Runtime's quantiser has int8 forms for a set of operators
(Conv, MatMul, Gemm, Add, Mul, Resize, pooling, …); every other node (a softmax's exponentials
and sums, GUM's GridSample, IFA's sines, normalisations, shape arithmetic) stays in float, as
does a ``Softmax`` that a float node reads (rtseg's choice: GAI's log-sum-exps), and
:mod:`rtseg.deploy.qdq_placement` places the Q/DQ pairs so that only what must be float is.
:func:`float_nodes` lists what runs in float by type.

:func:`convert_fp16` writes the fp16 variant; :func:`agreement` measures either against the
fp32 file, in sessions from :func:`rtseg.deploy.runtimes.ort_session`. Moved here from
``rtseg/quantize.py``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .qdq_placement import (
    FLOAT_OUT,
    consumers,
    drop_noop_casts,
    float_islands,
    inline_constant_identities,
    tidy_qdq,
)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an iterable of B×3×H×W arrays."""

    def __init__(self, name: str, batches: Iterable[np.ndarray]) -> None:
        self.name, self.batches = name, iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.name: batch.astype(np.float32)}

    def rewind(self) -> None:  # pragma: no cover - MinMax calibration reads once
        raise NotImplementedError


def quantize_int8(src: str | Path, dst: str | Path, batches: Iterable[np.ndarray],
                  per_channel: bool = True, op_types: list[str] | None = None,
                  exclude: list[str] | None = None, islands: bool = True,
                  extra_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the int8 QDQ version of the ONNX model ``src`` to ``dst``.

    Args:
        batches: calibration inputs, each a normalised float B×3×H×W array.
        per_channel: weights quantised per output channel (else per tensor).
        op_types: quantise only nodes of these types (default: every type the quantiser knows).
        exclude: names of nodes left in float.
        islands: leave float only what must be (:func:`float_islands` before quantising,
            :func:`tidy_qdq` after); False: the quantiser's own placement of Q/DQ pairs.
        extra_options: passed to ``quantize_static`` (e.g. ``{"ActivationSymmetric": True}``).

    Returns:
        ``{"quantized": {op: count}, "float": {op: count}, "calibration_batches": n}``, and with
        ``islands`` ``"islands"``: the nodes left float by :func:`float_islands` (by type) and
        what :func:`tidy_qdq` changed.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    src, dst = Path(src), Path(dst)
    seen: list[int] = []

    def counted() -> Iterator[np.ndarray]:
        for b in batches:
            seen.append(b.shape[0])
            yield b

    model = onnx.load(str(src))
    name = model.graph.input[0].name
    exclude = list(exclude or [])
    left: dict[str, int] = {}
    rewritten = inline_constant_identities(model)
    for i, node in enumerate(n for n in model.graph.node if not n.name):
        node.name = f"{node.op_type}_unnamed_{i}"  # nodes_to_exclude goes by name
        rewritten += 1
    if islands:
        rewritten += drop_noop_casts(model)
        kept = float_islands(model)
        left = dict(Counter(n.op_type for n in model.graph.node if n.name in kept))
        exclude += sorted(kept - set(exclude))
    inlined = dst.with_suffix(".inlined.onnx") if rewritten else None
    if inlined:
        onnx.save(model, str(inlined))
        src = inlined
    try:
        with warnings.catch_warnings():  # its zero-point arithmetic on constant-range tensors
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            quantize_static(str(src), str(dst), _Reader(name, counted()),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            op_types_to_quantize=op_types, nodes_to_exclude=exclude,
                            extra_options=extra_options)
    finally:
        if inlined:
            inlined.unlink(missing_ok=True)
    if not seen:
        raise UsageError("no calibration images: give --calib with at least one image")
    out: dict[str, Any] = {}
    if islands:
        quantised = onnx.load(str(dst))
        out["islands"] = {"float": left, **tidy_qdq(quantised, set(exclude))}
        onnx.save(quantised, str(dst))
    quantized, floating = float_nodes(dst)
    return {"quantized": quantized, "float": floating, "calibration_batches": len(seen),
            "calibration_images": sum(seen), **out}


# Operators that carry no arithmetic worth quantising (shapes, indices, layout).
_PLUMBING = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Constant",
             "Reshape", "Transpose", "ConstantOfShape", "Range", "Expand", "Floor", "Div",
             "Sub", "Equal", "Not", "Where", "Less", "Greater", "Identity", "Flatten", "Split",
             "QuantizeLinear", "DequantizeLinear"}


def float_nodes(path: str | Path) -> tuple[dict[str, int], dict[str, int]]:
    """Compute node types of a QDQ model: (quantised, float).

    A node counts as quantised when one of its inputs comes out of a DequantizeLinear and its
    output goes only into QuantizeLinear nodes (the runtime can fuse them into an int8 kernel);
    a MatMul or Gemm also without a QuantizeLinear after it (ONNX Runtime runs it from int8
    inputs to a float output). A Conv or Gemm also needs its weight out of a DequantizeLinear
    and its bias, if any, constant or out of one (else ONNX Runtime runs it in float). The
    rest of the arithmetic runs in float. Shape and index plumbing is left out of both counts.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dq_outputs = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    constant = {t.name for t in graph.initializer} | dq_outputs
    readers = consumers(graph)
    outputs = {o.name for o in graph.output}
    quantized: Counter = Counter()
    floating: Counter = Counter()
    for node in graph.node:
        if node.op_type in _PLUMBING:
            continue
        fed = any(i in dq_outputs for i in node.input)
        if node.op_type not in FLOAT_OUT:
            after = [r.op_type for o in node.output for r in readers[o]]
            fed = fed and bool(after) and set(after) == {"QuantizeLinear"} and not any(
                o in outputs for o in node.output)
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 1:
            bias_ok = len(node.input) < 3 or not node.input[2] or node.input[2] in constant
            fed = fed and node.input[1] in dq_outputs and bias_ok
        (quantized if fed else floating)[node.op_type] += 1
    return dict(quantized), dict(floating)


def convert_fp16(src: str | Path, dst: str | Path) -> None:
    """Write the fp16 version of the ONNX model ``src`` (ONNX Runtime's converter; float32
    input and output kept, so callers do not change)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def calibration_batches(calib: str | Path, size: tuple[int, int], count: int,
                        seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` normalised 1×3×H×W training images at ``size`` from a data folder (layout
    detected; its train split, else its only split) or ``"synthetic"`` (the built-in scenes)."""
    import torch

    from ..data import build_dataset, detect_dataset
    from ..data.transforms import eval_transforms
    from ..layers import resize

    if str(calib) == "synthetic":
        ds = build_dataset("synthetic", None, "train", transform=eval_transforms(),
                           size=size, num_images=count, seed=seed)
    else:
        kind = detect_dataset(calib)
        split = None if kind == "folder" and not (Path(calib) / "train").is_dir() else "train"
        ds = build_dataset(kind, calib, split, transform=eval_transforms())
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    for i in order[:count].tolist():
        image, _ = ds[(i, 0)]
        yield resize(image[None], size).numpy()


def agreement(fp32: str | Path, int8: str | Path, batches: Iterable[np.ndarray]
              ) -> dict[str, Any]:
    """How far the int8 (or fp16) model is from the fp32 one: the fraction of pixels whose
    class changes and the largest logit difference, over ``batches``."""
    from .runtimes import ort_session

    runs = [ort_session(p) for p in (fp32, int8)]
    changed = total = images = 0
    worst = 0.0
    for x in batches:
        images += x.shape[0]
        a, b = (s.run(None, {s.get_inputs()[0].name: x})[0] for s in runs)
        changed += int((a.argmax(1) != b.argmax(1)).sum())
        total += a.shape[0] * a.shape[2] * a.shape[3]
        worst = max(worst, float(np.abs(a - b).max()))
    return {"pixels_changed": changed / max(total, 1), "max_logit_diff": worst,
            "images": images}
