"""``rtseg export``: the command-line face of :func:`rtseg.export` (model or checkpoint in, files
out, each checked against PyTorch at the export size and, when dynamic, at a second size).

It only maps the arguments to the call and prints the returned report; the work and its
checks live in :mod:`rtseg.deploy`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..deploy import export as graph
from ..deploy.api import export
from ..deploy.export import ExportCheckError
from ..errors import UsageError
from .infer import _memory_size
from .types import int_between, non_negative_float, positive_int

# The TorchScript-based exporter rtseg uses goes up to opset 20; below 11 it has no Resize
# for bilinear upsampling with a computed size.
OPSETS = (11, 20)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand, run by :func:`run`."""
    p = subparsers.add_parser("export", help="export a model to ONNX / TorchScript / torch.export",
                              description=graph.__doc__,
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
    p.add_argument("--grid-sample", choices=("op", "gather"), default="op",
                   help="how GUM samples in the ONNX graph: op (GridSample, opset >= 16; fast "
                        "in OpenVINO; default) or gather (four gathers and a blend: faster in "
                        "ONNX Runtime, whose GridSample is slow and has no int8 form)")
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


def run(args: argparse.Namespace) -> int:
    """:func:`rtseg.export` with the command's arguments, its report printed: 0, or 1 when a
    written file fails its check against PyTorch."""
    if args.int8 and not (args.onnx and args.calib):
        raise UsageError("--int8 needs --onnx FILE and --calib DATA (a data folder or "
                         "'synthetic')")
    source, name = args.model, None
    if args.checkpoint:
        source, name = args.checkpoint, args.model
    elif args.model and (args.model.endswith(".pt") or Path(args.model).is_dir()):
        source = args.model
    try:
        report = export(
            source, args.onnx, size=tuple(args.size), dynamic=not args.static,
            int8_calib=args.calib if args.int8 else None, calib_images=args.calib_images,
            fp16=args.fp16, check=not args.no_check, atol=args.atol, opset=args.opset,
            batch=args.batch, grid_sample=args.grid_sample, torchscript=args.torchscript,
            program=args.exported, name=name,
            num_classes=args.num_classes, device=args.device, max_memory=args.max_memory,
            overwrite=args.overwrite, progress=True)
    except ExportCheckError as e:  # the file was written but is wrong: a result, not a usage error
        if e.report is not None:
            print(e.report)
        print(f"rtseg export: error: {e}", file=sys.stderr)
        return 1
    print(report)
    return 0
