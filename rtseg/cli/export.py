"""``rtseg export``: the command-line face of :mod:`rtseg.export` (model or checkpoint in, files
out, each checked against PyTorch at the export size and, when dynamic, at a second size)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from torch import nn

from .. import export as library
from ..backends import make_metadata, write_metadata
from ..data.folder import default_palette
from ..engine.checkpoint import load_model, resolve_checkpoint
from ..errors import UsageError
from ..export import STATIC_ONLY, ExportCheckError, second_size
from ..outputs import atomic_path, check_output, same_file
from ..registry import create_model
from ..utils import IMAGENET_MEAN, IMAGENET_STD, resolve_device
from .infer import _memory_size
from .types import int_between, non_negative_float, positive_int

# The TorchScript-based exporter rtseg uses goes up to opset 20; below 11 it has no Resize
# for bilinear upsampling with a computed size.
OPSETS = (11, 20)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand, run by :func:`run`."""
    p = subparsers.add_parser("export", help="export a model to ONNX / TorchScript / torch.export",
                              description=library.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", metavar="MODEL_OR_CKPT",
                   help="registered model name, or a checkpoint file or run folder (as "
                        "--checkpoint)")
    p.add_argument("--checkpoint", help="an `rtseg train` checkpoint (model, classes, weights), "
                   "or a run folder (its best.pt, else last.pt)")
    p.add_argument("--device", default="cpu", help="where to trace and check: cpu (default), "
                   "auto, cuda or cuda:N")
    p.add_argument("--num-classes", type=positive_int, default=19, help="without --checkpoint")
    p.add_argument("--size", nargs=2, type=positive_int, default=[512, 1024], metavar=("H", "W"),
                   help="export (trace) size; default 512 1024")
    p.add_argument("--batch", type=positive_int, default=1, help="batch of the trace input")
    p.add_argument("--onnx", metavar="FILE", help="write ONNX here")
    p.add_argument("--opset", type=int_between(*OPSETS), default=17,
                   help=f"ONNX opset, {OPSETS[0]} to {OPSETS[1]} (default 17)")
    p.add_argument("--int8", action="store_true",
                   help="also write <onnx>.int8.onnx: static QDQ int8, per-channel weights, "
                        "calibrated on --calib images")
    p.add_argument("--calib", metavar="DATA",
                   help="calibration images: a data folder (its train split) or 'synthetic'")
    p.add_argument("--calib-images", type=positive_int, default=64, help="calibration images (64)")
    p.add_argument("--fp16", action="store_true",
                   help="also write <onnx>.fp16.onnx (ONNX Runtime's converter, fp32 I/O)")
    p.add_argument("--torchscript", metavar="FILE", help="write a torch.jit.trace file here")
    p.add_argument("--exported", metavar="FILE", help="write a torch.export .pt2 file here")
    p.add_argument("--static", action="store_true", help="fixed batch, H and W")
    p.add_argument("--no-check", action="store_true",
                   help="skip the comparison with PyTorch (export size and a second size)")
    p.add_argument("--atol", type=non_negative_float, default=1e-4,
                   help="largest allowed difference")
    p.add_argument("--max-memory", type=_memory_size, metavar="SIZE",
                   help="memory the export and its checks may use (e.g. 4G; default: what is "
                        "available); a --size that needs more is refused")
    p.add_argument("--overwrite", action="store_true",
                   help="allow an output to replace the checkpoint or a file of another kind")
    p.set_defaults(func=run)


def _load(args: argparse.Namespace) -> tuple[nn.Module, str, str, dict]:
    """(model in eval mode, its name, where its weights come from, its classes and palette)."""
    device = resolve_device(args.device)
    if args.checkpoint:
        model, ckpt = load_model(args.checkpoint, device)
        name = ckpt["config"]["model"]
        if args.model and args.model != name:
            raise UsageError(f"{args.checkpoint} holds a {name!r} model, not {args.model!r}")
        table = {"classes": ckpt["classes"], "palette": ckpt["palette"]}
        return model, name, f"{args.checkpoint} ({ckpt['num_classes']} classes)", table
    if not args.model:
        raise UsageError("name a MODEL or give --checkpoint")
    model = create_model(args.model, args.num_classes, aux=False).to(device)
    table = {"classes": [f"class_{k}" for k in range(args.num_classes)],
             "palette": default_palette(args.num_classes)}
    return model.eval(), args.model, f"random weights, {args.num_classes} classes", table


def _int8(path, args: argparse.Namespace, size: tuple[int, int], metadata: dict) -> None:
    """Write and report the int8 version of the ONNX file ``path``."""
    from ..quantize import agreement, calibration_batches, quantize_int8

    out = path.with_suffix(".int8.onnx")
    with atomic_path(out) as tmp:
        report = quantize_int8(path, tmp, _bar(calibration_batches(
            args.calib, size, args.calib_images), args.calib_images, "int8 calibration"))
        write_metadata(tmp, {**metadata, "rtseg.precision": "int8"})
    held_out = calibration_batches(args.calib, size, min(8, args.calib_images), seed=1)
    close = agreement(path, out, _bar(held_out, min(8, args.calib_images), "int8 check"))
    print(f"wrote {out} (int8 QDQ, {report['calibration_images']} calibration images from "
          f"{args.calib}); quantised: "
          + ", ".join(f"{k} ×{v}" for k, v in sorted(report["quantized"].items())))
    if report["float"]:
        print("  still float (no int8 form in ONNX Runtime's quantiser): "
              + ", ".join(f"{k} ×{v}" for k, v in sorted(report["float"].items())))
    print(f"  int8 vs fp32 on {close['images']} images (another sample): "
          f"{100 * close['pixels_changed']:.2f} % of pixels "
          f"change class, max |logit diff| {close['max_logit_diff']:.3f}")


def _fp16(path, size: tuple[int, int], metadata: dict) -> None:
    """Write and check the fp16 version of the ONNX file ``path``."""
    import torch

    from ..quantize import agreement, convert_fp16

    out = path.with_suffix(".fp16.onnx")
    with atomic_path(out) as tmp:
        convert_fp16(path, tmp)
        write_metadata(tmp, {**metadata, "rtseg.precision": "fp16"})
    g = torch.Generator().manual_seed(2)
    close = agreement(path, out, [torch.randn(1, 3, *size, generator=g).numpy()
                                  for _ in range(2)])
    print(f"wrote {out} (fp16 weights and arithmetic, fp32 input/output); vs fp32 on 2 random "
          f"inputs: {100 * close['pixels_changed']:.2f} % of pixels change class, max |logit "
          f"diff| {close['max_logit_diff']:.3g}")


def _bar(items: Iterable, total: int, what: str) -> Iterator:
    """``items`` with a progress bar on stderr (cleared when done)."""
    from tqdm import tqdm

    return iter(tqdm(items, total=total, desc=what, leave=False))


def _outputs(args: argparse.Namespace) -> None:
    """Every file to be written checked against the checkpoint, each other and existing files
    of another kind, before any work."""
    inputs = [resolve_checkpoint(args.checkpoint)] if args.checkpoint else []
    onnx = Path(args.onnx) if args.onnx else None
    planned = [(args.onnx, "--onnx", "onnx"), (args.torchscript, "--torchscript", "torchscript"),
               (args.exported, "--exported", "torch.export")]
    if onnx and args.int8:
        planned.append((onnx.with_suffix(".int8.onnx"), "--int8's", "onnx"))
    if onnx and args.fp16:
        planned.append((onnx.with_suffix(".fp16.onnx"), "--fp16's", "onnx"))
    seen: list[tuple[Path, str]] = []
    for path, option, kind in planned:
        if path is None:
            continue
        path = check_output(path, option, inputs, kind, args.overwrite)
        for other, other_option in seen:
            if same_file(path, other):
                raise UsageError(f"{option} {path} is also the output of {other_option}")
        seen.append((path, option))


def _check_memory(model: nn.Module, args: argparse.Namespace, size: tuple[int, int]) -> None:
    from ..engine.memory import available_bytes, export_need, format_bytes

    limit = args.max_memory or available_bytes()
    if limit is None:
        return
    need = export_need(model, size, args.batch)
    if need > limit:
        raise UsageError(f"--size {size[0]} {size[1]}: exporting and checking at this size needs "
                         f"about {format_bytes(need)}, more than the {format_bytes(limit)} "
                         "available: export at a smaller --size (a dynamic export runs at any "
                         "size) or raise --max-memory")


def _write(write, path: str) -> Path:
    """``write(tmp)`` to a temporary beside ``path``, renamed to ``path`` when complete."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def run(args: argparse.Namespace) -> int:
    """Write the requested files and check each against PyTorch: 0, or 1 when a check fails."""
    if not (args.onnx or args.torchscript or args.exported):
        raise UsageError("nothing to write; give --onnx, --torchscript and/or --exported")
    if args.int8 and not (args.onnx and args.calib):
        raise UsageError("--int8 needs --onnx FILE and --calib DATA (a data folder or "
                         "'synthetic')")
    if args.fp16 and not args.onnx:
        raise UsageError("--fp16 needs --onnx FILE")
    if (args.int8 or args.fp16) and args.static and args.batch != 1:
        raise UsageError("--int8/--fp16 are calibrated and checked on single images: export "
                         "with --batch 1 (or without --static)")
    size = tuple(args.size)
    if args.model and (args.model.endswith(".pt") or Path(args.model).is_dir()) \
            and not args.checkpoint:
        args.checkpoint, args.model = args.model, None
    _outputs(args)
    model, name, origin, table = _load(args)
    _check_memory(model, args, size)
    dynamic = not args.static
    if dynamic and name in STATIC_ONLY:
        print(f"{name}: exported with static H and W: {STATIC_ONLY[name]}")
        dynamic = False
    checks = [] if args.no_check else [size] + ([second_size(size)] if dynamic else [])
    print(f"{name} ({origin}); trace input {args.batch}×3×{size[0]}×{size[1]}; "
          + ("dynamic batch/H/W" if dynamic else "static shapes"))
    try:
        if args.onnx:
            metadata = make_metadata(name, table["classes"], table["palette"], IMAGENET_MEAN,
                                     IMAGENET_STD, dynamic, size, args.batch)

            def onnx(tmp: Path) -> None:
                library.export_onnx(model, tmp, size, args.opset, dynamic, args.batch)
                write_metadata(tmp, metadata)

            path = _write(onnx, args.onnx)
            print(f"wrote {path} (ONNX opset {args.opset}, TorchScript-based exporter; classes, "
                  "palette and normalisation in its metadata)")
            for s in _bar(checks, len(checks), "ONNX check"):
                d = library.check_onnx(model, path, s, args.atol, args.batch)
                print(f"  ONNX Runtime vs PyTorch at {s[0]}×{s[1]}: max |diff| {d:.2e}")
            if args.int8:
                _int8(path, args, size, metadata)
            if args.fp16:
                _fp16(path, size, metadata)
        if args.torchscript:
            path = _write(lambda tmp: library.export_torchscript(model, tmp, size, args.batch),
                          args.torchscript)
            print(f"wrote {path} (torch.jit.trace)")
            for s in _bar(checks, len(checks), "TorchScript check"):
                d = library.check_torchscript(model, path, s, args.atol, args.batch)
                print(f"  TorchScript vs PyTorch at {s[0]}×{s[1]}: max |diff| {d:.2e}")
        if args.exported:
            ranges: dict[str, str] = {}

            def program(tmp: Path) -> None:
                ranges.update(library.export_program(model, tmp, size, dynamic, args.batch)[1])

            path = _write(program, args.exported)
            print(f"wrote {path} (torch.export; input axes "
                  + ", ".join(f"{k} {v}" for k, v in ranges.items()) + ")")
            for s in _bar(checks, len(checks), "torch.export check"):
                d = library.check_program(model, path, s, args.atol, args.batch)
                print(f"  torch.export vs PyTorch at {s[0]}×{s[1]}: max |diff| {d:.2e}")
    except ExportCheckError as e:  # the file was written but is wrong: a result, not a usage error
        print(f"rtseg export: error: {e}", file=sys.stderr)
        return 1
    return 0
