"""``rtseg eval`` and ``rtseg predict``: a checkpoint on a data split, or on images and video."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..backends import BACKENDS
from ..errors import UsageError
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


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"mode": args.mode, "crop": args.crop, "stride": args.stride,
            "scales": args.scales, "flip": args.flip, "short_side": args.short_side,
            "long_side": args.long_side, "window_average": args.window_average}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: mIoU, per-class IoU, boundary F")
    p.add_argument("checkpoint")
    p.add_argument("--split", default="val")
    p.add_argument("--dataset", help="default: detected from --data-root, or the training one")
    p.add_argument("--data-root", help="default: the training data root")
    p.add_argument("--tolerance", type=non_negative_int, default=2,
                   help="boundary F tolerance in pixels")
    p.add_argument("--limit", type=positive_int, help="evaluate only the first N images")
    p.add_argument("--json", help="output JSON (default: metrics_<split>.json by the checkpoint)")
    _inference_options(p)
    p.set_defaults(func=run_eval)

    p = sub.add_parser("predict", help="label PNGs and overlays for an image, folder or video")
    p.add_argument("checkpoint")
    p.add_argument("input", type=existing_path,
                   help="an image, a folder of images, or a video file")
    p.add_argument("--out", help="output folder (default: predictions/ next to the checkpoint),"
                   " or a video file (.mp4, …) for an overlay video of a video input")
    p.add_argument("--max-frames", type=positive_int, help="predict at most N frames")
    p.add_argument("--every", type=positive_int, default=1, help="video: predict every N-th frame")
    _inference_options(p)
    p.set_defaults(func=run_predict)


def run_eval(args: argparse.Namespace) -> int:
    from ..api import evaluate
    from ..engine.metrics import format_table

    res = evaluate(args.checkpoint, data=args.data_root, split=args.split, dataset=args.dataset,
                   device=args.device, tolerance=args.tolerance, limit=args.limit,
                   backend=args.backend, **_options(args))
    print(f"{res['dataset']} {args.split}: {res['images']} images, mIoU {100 * res['miou']:.2f}, "
          f"pixel acc {100 * res['pixel_acc']:.2f}, boundary F {100 * res['mbf']:.2f} "
          f"(tolerance {args.tolerance} px)")
    print(format_table(res, res["classes"]))
    out = Path(args.json or Path(args.checkpoint).parent / f"metrics_{args.split}.json")
    out.write_text(json.dumps(res, indent=2))
    print(f"metrics written to {out}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from ..api import load
    from ..engine.predict import predict_path, predict_video
    from ..utils import VIDEO_SUFFIXES

    seg = load(args.checkpoint, device=args.device, backend=args.backend, **_options(args))
    out = Path(args.out or Path(args.checkpoint).parent / "predictions")
    if out.suffix.lower() in VIDEO_SUFFIXES:
        res = predict_video(seg, args.input, out, every=args.every, max_frames=args.max_frames)
        print(f"{res['frames']} frame(s) predicted in {res['seconds']:.1f} s: "
              f"{res['fps']:.1f} FPS end to end (decode, predict, encode), "
              f"{res['model_fps']:.1f} FPS prediction alone; overlay video {out} "
              f"at {res['rate']:.3g} frames/s")
        return 0
    if args.every != 1:
        raise UsageError("--every applies to a video written with --out FILE.mp4")
    written = predict_path(seg, args.input, out, limit=args.max_frames)
    print(f"{len(written)} frame(s) predicted; label PNGs and overlays in {out}")
    return 0
