"""``rtseg eval`` and ``rtseg predict``: a checkpoint on a data split, or on images and video."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..deploy.runtimes import BACKENDS
from ..errors import RtsegError, UsageError
from .types import existing_path, non_negative_int, positive_float, positive_int


def _inference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS],
                   help="runtime: torch for a checkpoint, onnxruntime or openvino for an "
                        ".onnx file; auto picks by the file")
    p.add_argument("--mode", choices=["whole", "slide"], default="whole")
    p.add_argument("--crop", nargs=2, type=positive_int, metavar=("H", "W"),
                   help="window of --mode slide")
    p.add_argument("--stride", nargs=2, type=positive_int, metavar=("H", "W"),
                   help="window step of --mode slide (default: the crop, no overlap)")
    p.add_argument("--scales", nargs="+", type=positive_float, default=[1.0])
    p.add_argument("--flip", action="store_true", help="also predict the mirrored image")
    p.add_argument("--short-side", type=positive_int, metavar="N",
                   help="predict each image resized to this shorter side, aspect kept, and "
                        "resize the prediction back (ADE20K's protocol: 512)")
    p.add_argument("--long-side", type=positive_int, metavar="N",
                   help="with --short-side: at most this longer side (mmsegmentation's ADE20K "
                        "test resize: --short-side 512 --long-side 2048)")
    p.add_argument("--window-average", choices=["probs", "logits"], default="probs",
                   help="what overlapping --mode slide windows average: probabilities "
                        "(default) or logits (mmsegmentation); see docs/evaluation.md")


def _memory_size(text: str) -> int:
    from ..inference.memory import parse_size

    try:
        return parse_size(text)
    except RtsegError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"mode": args.mode, "crop": args.crop, "stride": args.stride,
            "scales": args.scales, "flip": args.flip, "short_side": args.short_side,
            "long_side": args.long_side, "window_average": args.window_average}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: mIoU, per-class IoU, boundary F "
                       "and Boundary IoU")
    p.add_argument("checkpoint", help="a checkpoint, a run folder (its best.pt, else "
                   "last.pt) or an exported .onnx file")
    p.add_argument("--split", default="val")
    p.add_argument("--dataset", help="default: detected from --data-root, or the training one")
    p.add_argument("--data-root", help="default: the training data root")
    p.add_argument("--tolerance", type=non_negative_int, default=2,
                   help="boundary F tolerance in pixels (--bf-protocol pooled)")
    p.add_argument("--bf-protocol", choices=["pooled", "per_image"], default="pooled",
                   help="boundary F: pooled (rtseg's: counts summed over the data set, square "
                        "tolerance) or per_image (Csurka et al.'s BF of the SegNet/CamVid "
                        "papers); see docs/evaluation.md")
    p.add_argument("--bf-ratio", type=positive_float, default=0.0075, metavar="R",
                   help="--bf-protocol per_image: tolerance as a fraction of the image "
                        "diagonal (default 0.0075)")
    p.add_argument("--biou-ratio", type=positive_float, default=0.02, metavar="R",
                   help="Boundary IoU band width as a fraction of the image diagonal "
                        "(default 0.02, the paper's)")
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    p.add_argument("--json", help="output JSON (default: metrics_<split>.json by the checkpoint)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --json to replace an input or a file that is not JSON")
    _inference_options(p)
    p.set_defaults(func=run_eval)

    p = sub.add_parser("predict", help="label PNGs and overlays for an image, folder or video")
    p.add_argument("checkpoint", help="a checkpoint, a run folder (its best.pt, else "
                   "last.pt) or an exported .onnx file")
    p.add_argument("input", type=existing_path,
                   help="an image, a folder of images, or a video file")
    p.add_argument("--out", help="output folder (default: predictions/ next to the checkpoint),"
                   " or a video file (.mp4, …) for an overlay video of a video input")
    p.add_argument("--max-frames", type=positive_int, help="predict at most N frames")
    p.add_argument("--every", type=positive_int, default=1, help="video: predict every N-th frame")
    p.add_argument("--max-memory", type=_memory_size, metavar="SIZE",
                   help="memory a whole-image pass may use (e.g. 4G; default: what is "
                        "available); a larger image is predicted in sliding windows")
    p.add_argument("--overwrite", action="store_true",
                   help="allow an output to replace an input (never by default)")
    _inference_options(p)
    p.set_defaults(func=run_predict)


def run_eval(args: argparse.Namespace) -> int:
    from ..api import evaluate
    from ..data import DATASETS
    from ..deploy.metadata import is_exported
    from ..inference.metrics import format_metrics
    from ..outputs import atomic_path, check_output
    from ..training.checkpoint import resolve_checkpoint
    from ..utils import percent

    ckpt = resolve_checkpoint(args.checkpoint)
    in_memory = args.dataset in DATASETS and not DATASETS[args.dataset].needs_root
    if is_exported(ckpt) and not args.data_root and not in_memory:
        raise UsageError(f"{ckpt}: an exported model does not record its data set: give "
                         "--data-root PATH (its layout is detected; --dataset NAME to name it) "
                         "or --dataset synthetic")
    out = check_output(args.json or ckpt.parent / f"metrics_{args.split}.json", "--json",
                       [ckpt], "json", args.overwrite)
    res = evaluate(ckpt, data=args.data_root, split=args.split, dataset=args.dataset,
                   device=args.device, tolerance=args.tolerance, boundary=args.bf_protocol,
                   bf_ratio=args.bf_ratio, biou_ratio=args.biou_ratio, limit=args.limit,
                   backend=args.backend, **_options(args))
    how = (f"tolerance {args.tolerance} px, pooled" if args.bf_protocol == "pooled"
           else f"per image, tolerance {100 * args.bf_ratio:g} % of the diagonal")
    print(f"{res['dataset']} {args.split}: {res['images']} images, mIoU {percent(res['miou'])}, "
          f"pixel acc {percent(res['pixel_acc'])}, boundary F {percent(res['mbf'])} ({how}), "
          f"boundary IoU {percent(res['biou'])} (d = {100 * args.biou_ratio:g} % of the "
          "diagonal)")
    print(format_metrics(res, res["classes"]))
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(res, indent=2))
    print(f"metrics written to {out}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from ..api import load
    from ..outputs import same_file
    from ..predict import predict_path, predict_video
    from ..training.checkpoint import resolve_checkpoint
    from ..utils import VIDEO_SUFFIXES

    ckpt = resolve_checkpoint(args.checkpoint)
    out = Path(args.out or ckpt.parent / "predictions")
    if same_file(out, ckpt) and not args.overwrite:
        raise UsageError(f"--out {out} names the checkpoint {ckpt}: choose another output")
    video = out.suffix.lower() in VIDEO_SUFFIXES
    if args.every != 1 and not video:
        raise UsageError("--every applies to a video written with --out FILE.mp4")
    seg = load(ckpt, device=args.device, backend=args.backend, **_options(args))
    from tqdm import tqdm

    safety = {"max_memory": args.max_memory, "overwrite": args.overwrite,  # beside the bar
              "note": lambda message: tqdm.write(f"rtseg predict: note: {message}",
                                                 file=sys.stderr)}
    if video:
        res = predict_video(seg, args.input, out, every=args.every, max_frames=args.max_frames,
                            **safety)
        print(f"{res['frames']} frame(s) predicted in {res['seconds']:.1f} s: "
              f"{res['fps']:.1f} FPS end to end (decode, predict, encode), "
              f"{res['model_fps']:.1f} FPS prediction alone; overlay video {out} "
              f"at {res['rate']:.3g} frames/s")
        return 0
    written = predict_path(seg, args.input, out, limit=args.max_frames, **safety)
    print(f"{len(written)} frame(s) predicted; label PNGs and overlays in {out}, the colour "
          f"of each class in {out / 'legend.png'}")
    return 0
