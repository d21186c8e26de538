"""``rtseg.export``: a model or checkpoint in, deployable files out, each checked against PyTorch.

One call joins what an export needs: the source resolved (a checkpoint or run folder, a
:class:`~rtseg.Segmenter`, an ``nn.Module`` or a registered model name), every output checked
before any work (:func:`rtseg.outputs.check_output`), the memory the export needs checked, the
graph exported (:mod:`rtseg.deploy.export`) with the metadata ``rtseg.load`` needs
(:mod:`rtseg.deploy.metadata`), each file compared with PyTorch at the export size and, when
dynamic, at a second size, and the int8 / fp16 variants written and measured
(:mod:`rtseg.deploy.quantize`). It returns an :class:`~rtseg.deploy.report.ExportReport`;
``rtseg export`` prints it. Every file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from ..outputs import atomic_path, check_output, same_file
from ..segmenter import Segmenter
from ..upsample.gum import GRID_SAMPLE
from ..utils import IMAGENET_MEAN, IMAGENET_STD
from . import export as graph
from . import torch_files
from .export import STATIC_ONLY, ExportCheckError, second_size
from .metadata import make_metadata, write_metadata
from .report import TITLES, ExportReport


@dataclass
class _Source:
    model: nn.Module
    name: str
    origin: str
    classes: list[str]
    palette: list
    mean: tuple
    std: tuple


def _is_checkpoint(source: str | Path) -> bool:
    return isinstance(source, Path) or source.endswith(".pt") or Path(source).is_dir()


def _resolve(source: Any, name: str | None, num_classes: int, classes: Sequence[str] | None,
             device: str | torch.device) -> _Source:
    """The eval-mode model of ``source`` with its name, origin, classes and palette."""
    from ..data.folder import default_palette
    from ..utils import resolve_device

    mean, std = tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)
    if source is None:
        raise UsageError("name a MODEL or give --checkpoint")
    if isinstance(source, Segmenter):
        if not isinstance(source.model, nn.Module):
            raise UsageError(f"{source.name}: an exported model cannot be exported again; "
                             "export its checkpoint")
        return _Source(source.model.eval(), name or source.name.split(" (")[0], "a Segmenter",
                       list(source.classes), list(source.palette), source.mean, source.std)
    if isinstance(source, nn.Module):
        model = source.eval()
        if classes is None:
            p = next(model.parameters(), None)
            with torch.inference_mode():
                x = torch.zeros(1, 3, 64, 64, device=p.device if p is not None else "cpu")
                k = model(x).shape[1]
            classes = [f"class_{i}" for i in range(k)]
        return _Source(model, name or type(model).__name__, "an nn.Module", list(classes),
                       default_palette(len(classes)), mean, std)
    if not isinstance(source, (str, Path)):
        raise UsageError(f"cannot export a {type(source).__name__}; give a checkpoint path, a "
                         "Segmenter, an nn.Module or a registered model name")
    if str(source).lower().endswith(".onnx"):
        raise UsageError(f"{source}: already an exported file; export its checkpoint")
    dev = resolve_device(device)
    if _is_checkpoint(source):
        from ..training.checkpoint import load_model

        model, ckpt = load_model(source, dev)
        held = ckpt["config"]["model"]
        if name and name != held:
            raise UsageError(f"{source} holds a {held!r} model, not {name!r}")
        return _Source(model, held, f"{source} ({ckpt['num_classes']} classes)",
                       ckpt["classes"], ckpt["palette"], mean, std)
    from ..registry import create_model

    k = len(classes) if classes is not None else num_classes
    model = create_model(source, k, aux=False).to(dev)
    classes = list(classes) if classes is not None else [f"class_{i}" for i in range(k)]
    return _Source(model.eval(), source, f"random weights, {k} classes", classes,
                   default_palette(k), mean, std)


def _bar(items: Iterable, total: int, what: str, progress: bool) -> Iterator:
    """``items``, with a progress bar on stderr (cleared when done) when ``progress``."""
    if not progress:
        return iter(items)
    from tqdm import tqdm

    return iter(tqdm(items, total=total, desc=what, leave=False))


def _check_outputs(planned: list[tuple[Path | None, str, str]], inputs: list[Path],
                   overwrite: bool) -> None:
    """Every file to be written checked against the inputs, each other and existing files of
    another kind, before any work."""
    seen: list[tuple[Path, str]] = []
    for path, option, kind in planned:
        if path is None:
            continue
        path = check_output(path, option, inputs, kind, overwrite)
        for other, other_option in seen:
            if same_file(path, other):
                raise UsageError(f"{option} {path} is also the output of {other_option}")
        seen.append((path, option))


def _check_memory(model: nn.Module, size: tuple[int, int], batch: int,
                  max_memory: int | None) -> None:
    from ..inference.memory import available_bytes, export_need, format_bytes

    limit = max_memory or available_bytes()
    if limit is None:
        return
    need = export_need(model, size, batch)
    if need > limit:
        raise UsageError(f"--size {size[0]} {size[1]}: exporting and checking at this size needs "
                         f"about {format_bytes(need)}, more than the {format_bytes(limit)} "
                         "available: export at a smaller --size (a dynamic export runs at any "
                         "size) or raise --max-memory")


def _write(write: Any, path: Path) -> Path:
    """``write(tmp)`` to a temporary beside ``path``, renamed to ``path`` when complete."""
    with atomic_path(path) as tmp:
        write(Path(tmp))
    return path


def export(
    source: str | Path | Segmenter | nn.Module | None,
    path: str | Path | None = None,
    *,
    size: tuple[int, int] = (512, 1024),
    dynamic: bool = True,
    int8_calib: str | Path | None = None,
    calib_images: int = 64,
    fp16: bool = False,
    check: bool = True,
    atol: float = 1e-4,
    opset: int = 17,
    batch: int = 1,
    grid_sample: str = "op",
    torchscript: str | Path | None = None,
    program: str | Path | None = None,
    name: str | None = None,
    num_classes: int = 19,
    classes: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    max_memory: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> ExportReport:
    """Export ``source`` to ONNX at ``path`` (with the metadata :func:`rtseg.load` reads) and/or
    TorchScript / torch.export, each checked against the PyTorch model.

    Args:
        source: a checkpoint (``.pt``) or run folder, a :class:`~rtseg.Segmenter` of one, an
            ``nn.Module`` or a registered model name (random weights, ``num_classes`` classes).
        path: the ONNX file (None: no ONNX).
        size: the trace size H, W; a dynamic export then runs at any size.
        dynamic: symbolic batch, H and W (else fixed at ``batch``×3×``size``).
        int8_calib: also write ``<path>.int8.onnx``, static QDQ int8 calibrated on
            ``calib_images`` images of this data folder (its train split) or ``"synthetic"``.
        fp16: also write ``<path>.fp16.onnx`` (fp16 weights and arithmetic, fp32 I/O).
        check: compare each file with PyTorch at ``size`` and, when dynamic, a second size;
            a difference above ``atol × max(1, largest |logit|)`` raises ExportCheckError (the
            file stays written; the exception's ``report`` says what was).
        opset, batch: ONNX opset; batch of the trace input.
        grid_sample: how GUM samples in the ONNX graph, by target runtime: ``"op"`` (ONNX
            ``GridSample``, opset ≥ 16: fast in OpenVINO) or ``"gather"`` (four gathers and a
            blend: ONNX Runtime's GridSample kernel is slow and has no int8 form); recorded
            in the metadata. Models without GUM export the same graph either way.
        torchscript, program: also write a ``torch.jit.trace`` file / a ``torch.export`` .pt2.
        name: the model name a checkpoint must hold, or recorded for an nn.Module.
        num_classes, classes: for a model name or nn.Module: the class count or names.
        device: where a checkpoint or named model is traced and checked.
        max_memory: bytes the export and checks may use (default: what is available).
        overwrite: allow an output to replace an input or a file of another kind.
        progress: progress bars on stderr.

    Raises:
        RtsegError: a bad source, option or output (one line); ExportCheckError (also an
        RtsegError) when a written file does not reproduce PyTorch.
    """
    path = Path(path) if path is not None else None
    torchscript = Path(torchscript) if torchscript is not None else None
    program = Path(program) if program is not None else None
    if not (path or torchscript or program):
        raise UsageError("nothing to write; give --onnx, --torchscript and/or --exported")
    if int8_calib is not None and path is None:
        raise UsageError("--int8 needs --onnx FILE and --calib DATA (a data folder or "
                         "'synthetic')")
    if fp16 and path is None:
        raise UsageError("--fp16 needs --onnx FILE")
    if grid_sample not in GRID_SAMPLE:
        raise UsageError(f"unknown grid_sample {grid_sample!r}; use {' or '.join(GRID_SAMPLE)}")
    if (int8_calib is not None or fp16) and not dynamic and batch != 1:
        raise UsageError("--int8/--fp16 are calibrated and checked on single images: export "
                         "with --batch 1 (or without --static)")
    size = (int(size[0]), int(size[1]))
    inputs = []
    if isinstance(source, (str, Path)) and _is_checkpoint(source):
        from ..training.checkpoint import resolve_checkpoint

        source = resolve_checkpoint(source)
        inputs.append(source)
    int8 = path.with_suffix(".int8.onnx") if path and int8_calib is not None else None
    half = path.with_suffix(".fp16.onnx") if path and fp16 else None
    _check_outputs([(path, "--onnx", "onnx"), (torchscript, "--torchscript", "torchscript"),
                    (program, "--exported", "torch.export"), (int8, "--int8's", "onnx"),
                    (half, "--fp16's", "onnx")], inputs, overwrite)
    src = _resolve(source, name, num_classes, classes, device)
    model = src.model
    _check_memory(model, size, batch, max_memory)
    report = ExportReport(src.name, src.origin, size, batch, dynamic, opset, grid_sample)
    if dynamic and src.name in STATIC_ONLY:
        report.notes.append(f"{src.name}: exported with static H and W: {STATIC_ONLY[src.name]}")
        report.dynamic = dynamic = False
    sizes = [] if not check else [size] + ([second_size(size)] if dynamic else [])

    def checked(fmt: str, file: Path) -> None:
        for s in _bar(sizes, len(sizes), f"{TITLES[fmt]} check", progress):
            report.checks.append(graph.compare(fmt, model, file, s, atol, batch))

    try:
        if path:
            metadata = make_metadata(src.name, src.classes, src.palette, src.mean, src.std,
                                     dynamic, size, batch, grid_sample=grid_sample)

            def onnx(tmp: Path) -> None:
                graph.export_onnx(model, tmp, size, opset, dynamic, batch, grid_sample)
                write_metadata(tmp, metadata)

            report.onnx = _write(onnx, path)
            checked("onnx", path)
            if int8 is not None:
                _int8(report, path, int8, str(int8_calib), calib_images, metadata, progress)
            if half is not None:
                _fp16(report, path, half, metadata)
        if torchscript:
            report.torchscript = _write(
                lambda tmp: torch_files.export_torchscript(model, tmp, size, batch), torchscript)
            checked("torchscript", torchscript)
        if program:
            report.program = _write(lambda tmp: report.program_ranges.update(
                torch_files.export_program(model, tmp, size, dynamic, batch)[1]), program)
            checked("torch.export", program)
    except ExportCheckError as e:
        e.report = report  # what was written before the failed check
        raise
    return report


def _int8(report: ExportReport, path: Path, out: Path, calib: str, images: int,
          metadata: dict[str, str], progress: bool) -> None:
    """Write the int8 version of the ONNX file ``path`` to ``out`` and measure it."""
    from .quantize import agreement, calibration_batches, quantize_int8
    from .runtimes import installed, openvino_compiles

    size = report.size
    with atomic_path(out) as tmp:
        report.int8_quantized = quantize_int8(path, tmp, _bar(calibration_batches(
            calib, size, images), images, "int8 calibration", progress))
        extra = {"rtseg.precision": "int8"}
        if not report.dynamic and installed("openvino"):  # what backend="auto" reads
            report.int8_openvino = extra["rtseg.openvino"] = openvino_compiles(tmp)
        write_metadata(tmp, {**metadata, **extra})
    report.int8, report.int8_calib = out, calib
    held_out = calibration_batches(calib, size, min(8, images), seed=1)
    report.int8_agreement = agreement(path, out, _bar(held_out, min(8, images), "int8 check",
                                                      progress))


def _fp16(report: ExportReport, path: Path, out: Path, metadata: dict[str, str]) -> None:
    """Write the fp16 version of the ONNX file ``path`` to ``out`` and measure it."""
    from .quantize import agreement, convert_fp16

    with atomic_path(out) as tmp:
        convert_fp16(path, tmp)
        write_metadata(tmp, {**metadata, "rtseg.precision": "fp16"})
    report.fp16 = out
    g = torch.Generator().manual_seed(2)
    report.fp16_agreement = agreement(path, out, [torch.randn(1, 3, *report.size,
                                                              generator=g).numpy()
                                                  for _ in range(2)])
