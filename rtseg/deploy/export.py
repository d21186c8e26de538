"""Graph export and its checks: ONNX (checked in ONNX Runtime), and the comparison with PyTorch
that every exported format uses (TorchScript and torch.export files: :mod:`.torch_files`).

The building blocks of :func:`rtseg.export` (``rtseg/deploy/api.py``), which adds the metadata,
int8 and fp16.

Every file holds the eval-mode network: a B×3×H×W float image in, B×K×H×W logits out (the
final upsampling included), exactly what ``model(x)`` returns.

**ONNX exporter.** With torch 2.13 ``torch.onnx.export`` defaults to the dynamo-based exporter,
which needs the ``onnxscript`` package (not a dependency of rtseg, and not installed here); the
TorchScript-based exporter (``dynamo=False``, deprecated but maintained) exports every rtseg
model at opset 17 and matches PyTorch within a few 1e-6 in ONNX Runtime, so it is the one used.

**What the graph computes.** Every upsampler's *export-safe* fast formula
(:func:`rtseg.layers.fast_formula`: its inference algebra without in-place writes, caches or
size branches; each upsampler's module docstring and docs/deploy.md say what its graph holds),
not its plain training formula; under :func:`rtseg.layers.reference_paths` an export records
the plain formulas. GUM samples with ``GridSample`` (opset ≥ 16) or, with
``grid_sample="gather"``, with four gathers and a blend (any opset from 11). The weight
arithmetic these formulas trace (BatchNorm folded into products, stacked or composed weights)
is folded into initializers after the export (:func:`fold_constants`).

**Dynamic sizes.** The batch, H and W axes are dynamic by default: every size-dependent
quantity (resize targets, IFA's cell indices, GUM's sampling grid and offset scale,
attention's 1/n) is computed from the traced input shape, so the graph is valid at any size,
and :func:`check_onnx` verifies that at a second size. Every registered model exports
dynamically (:data:`STATIC_ONLY` is empty).

The tracer does keep two Python decisions made at the export size: ``rtseg.layers.resize``
returns its input unchanged when the target grid has the same size, and IFA skips the cell
selection of a level already on the output grid. The second holds at every size (the networks
decode on their finest level's grid). For the first, a trace at a size where the grids differ
records the resize, which is exact at every size (a bilinear resize onto the same grid is the
identity); only a trace at a size where two levels coincide (the finer one a single pixel,
inputs of 32 pixels or fewer) would record a skip. So export at a deployment size (the default
is 512×1024); the ONNX file then runs correctly at any size, small ones included.

**Static sizes** (``dynamic=False``, ``rtseg export --static``): the graph serves its one
size and is recorded inside :func:`rtseg.layers.static_sizes`, where an upsampler may use a
formula that branches on sizes: IFA adds a level whose grid divides the output's by
broadcasting (no gathers) and its position term as a constant periodic table; CARAFE, FADE
and SAPA read their k² taps at H = s·h as slices of the padded map (no gathers). Elsewhere
the same formulas as the dynamic graph.

Modules that cache tensors (GUM's sampling grid) never use the cache while tracing, exporting
or compiling (see :func:`rtseg.upsample.gum.grid_cache_enabled`).

Every check runs the file the way ``rtseg.load`` does (ONNX through
:class:`rtseg.deploy.runtimes.OnnxRuntimeModel`) and compares its logits with the PyTorch
model's on a seeded random input: :func:`compare` returns the largest difference and the share
of pixels whose label agrees; the ``check_*`` functions raise :class:`ExportCheckError` beyond
the tolerance.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, RtsegError, UsageError
from ..layers import static_sizes

# model name → why it cannot be exported with dynamic H and W (none at present)
STATIC_ONLY: dict[str, str] = {}


FORMATS = ("onnx", "torchscript", "torch.export")


class ExportCheckError(RtsegError, ValueError):
    """An exported file does not reproduce the PyTorch model (it fails to run, has another
    output shape, or differs by more than the tolerance). The file was written: the command
    line reports this with status 1, not 2."""

    report: Any = None  # set by rtseg.export: its ExportReport of what was written


@dataclass(frozen=True)
class Check:
    """One comparison of an exported file with the PyTorch model."""

    format: str  # one of FORMATS
    size: tuple[int, int]
    batch: int
    max_diff: float  # largest |exported − PyTorch| of the logits
    label_agreement: float  # share of pixels whose argmax label is the same, 0..1


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence the warnings every export of these models emits, and only those.

    * TracerWarning "Converting a tensor to a Python boolean": ``rtseg.layers.resize`` skipping
      a same-size resize (see the module docstring), and IFA skipping the selection of a
      level already on the output grid; checked by the second-size comparison.
    * the deprecation notices of the TorchScript-based exporter and ``torch.jit``.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def example_input(size: tuple[int, int], batch: int, seed: int, like: nn.Module) -> torch.Tensor:
    """A seeded ``batch``×3×``size`` standard-normal image on the device of ``like``."""
    p = next(like.parameters(), None)
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))
    return x.to(p.device if p is not None else "cpu")


def second_size(size: tuple[int, int]) -> tuple[int, int]:
    """A check size unlike ``size``: 7/8 of it plus an odd offset (odd H and W)."""
    h, w = size
    return h * 7 // 8 + 3 - (h * 7 // 8) % 2, w * 7 // 8 + 5 - (w * 7 // 8) % 2


def export_onnx(
    model: nn.Module,
    path: str | Path,
    size: tuple[int, int] = (512, 1024),
    opset: int = 17,
    dynamic: bool = True,
    batch: int = 1,
    grid_sample: str = "op",
) -> Path:
    """Export ``model`` (put in eval mode) to ONNX at ``path``.

    Input ``image`` B×3×H×W float32, output ``logits`` B×K×H×W. With ``dynamic`` the batch, H
    and W axes are symbolic; the graph is traced on a ``batch``×3×``size`` random input.
    Without it the graph serves that size only and is recorded inside
    :func:`rtseg.layers.static_sizes` (upsamplers may record size-specific formulas).
    ``grid_sample``: how GUM samples, ``"op"`` (ONNX ``GridSample``: OpenVINO's kernel is
    fast) or ``"gather"`` (four ``Gather`` and a blend, :func:`rtseg.upsample.gum.
    grid_sample_gather`: ONNX Runtime's GridSample kernel is slow and has no int8 form).
    Raises UsageError for an opset the model cannot use (``GridSample`` needs ≥ 16).
    """
    from ..upsample.gum import GRID_SAMPLE, grid_sample_as

    if grid_sample not in GRID_SAMPLE:
        raise UsageError(f"unknown grid_sample {grid_sample!r}; use {' or '.join(GRID_SAMPLE)}")
    sampling = sorted({type(m).__name__ for m in model.modules()
                       if getattr(m, "needs_grid_sample", False)
                       and not (grid_sample == "gather" and getattr(m, "can_gather", False))})
    if opset < 16 and sampling:
        raise UsageError(f"this model uses grid_sample ({', '.join(sampling)}), which needs "
                         f"opset >= 16; got --opset {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    x = example_input(size, batch, 0, model)
    axes = {0: "batch", 2: "height", 3: "width"}
    static = contextlib.nullcontext() if dynamic else static_sizes()
    with quiet_export(), torch.no_grad(), grid_sample_as(grid_sample), static:
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, opset_version=opset,
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes} if dynamic else None,
            do_constant_folding=True,
        )
    fold_constants(path)
    while not dynamic and fold_shapes(path):  # a folded size lets inference know more shapes
        fold_constants(path)
    return path


def fold_shapes(path: str | Path) -> int:
    """Replace every ``Shape`` node of the ONNX file at ``path`` whose input has a shape that
    ONNX shape inference knows in full by an initializer holding that shape; returns how many.

    In a static export every shape is known, but the TorchScript tracer still records the
    sizes it read as ``Shape`` nodes, so the arithmetic on them (IFA's cell offsets and their
    encoding, resize targets) stays in the graph, where the int8 quantiser would quantise it
    and OpenVINO 2026.4 fails to compile one such quantised ``Gemm``. :func:`fold_constants`
    then folds what these constants feed."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    path = str(path)
    model = onnx.load(path)
    inferred = onnx.shape_inference.infer_shapes(model)
    known: dict[str, list[int]] = {
        i.name: list(i.dims) for i in model.graph.initializer}
    for info in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        t = info.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            known[info.name] = [d.dim_value for d in t.shape.dim]
    graph, folded = model.graph, []
    for node in graph.node:
        if node.op_type != "Shape" or node.input[0] not in known:
            continue
        dims = known[node.input[0]]
        attrs = {a.name: a.i for a in node.attribute}
        value = np.array(dims[attrs.get("start", 0):attrs.get("end", len(dims))], np.int64)
        graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    if folded:
        onnx.save(model, path)
    return len(folded)


def fold_constants(path: str | Path) -> int:
    """Replace every node of the ONNX file at ``path`` whose inputs are all initializers or
    constants by an initializer holding its value; returns how many nodes went.

    The export-safe formulas compute weights in the graph from the parameters (BatchNorm
    folded into a product, stacked or composed weights, :mod:`rtseg.upsample`), and the
    TorchScript-based exporter's own constant folding leaves some of that arithmetic in the
    graph (it does not fold ``Flatten`` or a matrix-vector ``MatMul``). ONNX Runtime and
    OpenVINO would fold it when they load the file; OpenCV DNN cannot read some of it. Values
    are computed once here with ``onnx.reference``.
    """
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    path = str(path)
    model = onnx.load(path)
    graph = model.graph
    known = {init.name for init in graph.initializer}
    constants = [n for n in graph.node if n.op_type == "Constant"]
    known.update(o for n in constants for o in n.output)
    subgraph = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    fold = []
    for node in graph.node:  # topological order: a folded value feeds later nodes
        if node.op_type == "Constant" or any(a.type in subgraph for a in node.attribute):
            continue
        if node.input and all(i == "" or i in known for i in node.input):
            fold.append(node)
            known.update(node.output)
    if not fold:
        return 0
    folded = {id(n) for n in fold}
    kept = [n for n in graph.node if id(n) not in folded]
    needed = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    wanted = [o for n in fold for o in n.output if o in needed]
    read = {i for n in fold for i in n.input}
    sub = onnx.helper.make_model(
        onnx.helper.make_graph(constants + fold, "fold", [],
                               [onnx.helper.make_empty_tensor_value_info(o) for o in wanted],
                               initializer=[t for t in graph.initializer if t.name in read]),
        opset_imports=list(model.opset_import))
    values = ReferenceEvaluator(sub).run(wanted, {})
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in
                             zip(wanted, values, strict=True))
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    dead = [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]
    for node in dead:
        graph.node.remove(node)
    onnx.save(model, path)
    return len(fold)


def _onnx_runner(path: str | Path, size: tuple[int, int], batch: int
                 ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The ONNX file as ``rtseg.load`` runs it (ONNX Runtime), failures as ExportCheckError."""
    from .runtimes import OnnxRuntimeModel

    try:
        runtime = OnnxRuntimeModel(path)
    except CheckpointError as e:
        raise ExportCheckError(str(e)) from None

    def run(x: torch.Tensor) -> torch.Tensor:
        try:
            return runtime(x)
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own types
            raise ExportCheckError(f"{path}: ONNX Runtime cannot run it at {size[0]}×{size[1]}, "
                                   f"batch {batch} ({type(e).__name__}: {e})") from None

    return run


def _torch_runner(fmt: str, path: str | Path, device: torch.device
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    if fmt == "torchscript":
        with quiet_export():
            return torch.jit.load(str(path), map_location=device)
    return torch.export.load(str(path)).module()


def compare(fmt: str, model: nn.Module, path: str | Path, size: tuple[int, int],
            atol: float = 1e-4, batch: int = 1, seed: int = 1) -> Check:
    """Run the ``fmt`` file at ``path`` and ``model`` (eval) on a random ``batch``×3×``size``
    input; ExportCheckError when the file cannot run, its output shape differs, or the largest
    difference exceeds ``atol × max(1, largest |PyTorch logit|)`` (float32 rounding grows with
    the logits: the peers' official initialisation gives logits in the hundreds)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}; use {', '.join(FORMATS)}")
    model.eval()
    x = example_input(size, batch, seed, model)
    if fmt == "onnx":
        out = _onnx_runner(path, size, batch)(x)
        what = f"{path}: ONNX"
    else:
        run = _torch_runner(fmt, path, x.device)
        with torch.no_grad():
            out = run(x)
        what = str(path) + ":"
    with torch.inference_mode():
        ref = model(x)
    at = f"{size[0]}×{size[1]}"
    out, ref = out.float().cpu(), ref.float().cpu()
    if out.shape != ref.shape:
        raise ExportCheckError(f"{what} output shape {tuple(out.shape)} != PyTorch "
                               f"{tuple(ref.shape)} at {at}")
    diff = (out - ref).abs().max().item()
    limit = atol * max(1.0, ref.abs().max().item())
    if not diff <= limit:
        runner = "ONNX Runtime output" if fmt == "onnx" else "output"
        raise ExportCheckError(f"{path}: {runner} differs from PyTorch by {diff:.3g} at {at} "
                               f"(tolerance {limit:.3g} = {atol:g} × max(1, largest |logit|))")
    agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
    return Check(fmt, tuple(size), batch, diff, agree)


def check_onnx(model: nn.Module, path: str | Path, size: tuple[int, int], atol: float = 1e-4,
               batch: int = 1, seed: int = 1) -> float:
    """Largest |ONNX Runtime − PyTorch| of the logits on a random ``batch``×3×``size`` input.

    Runs the file as ``rtseg.load`` does (:class:`~rtseg.deploy.runtimes.OnnxRuntimeModel`).
    Raises ExportCheckError when it cannot run the file, the output shape differs or the
    difference exceeds ``atol × max(1, largest |logit|)``.
    """
    return compare("onnx", model, path, size, atol, batch, seed).max_diff
