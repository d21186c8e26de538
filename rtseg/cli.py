"""Command line: ``rtseg <command>`` or ``python -m rtseg <command>``."""

from __future__ import annotations

import argparse
import sys

from . import create_model, list_models


def _info(args: argparse.Namespace) -> int:
    from .complexity import count_macs, count_params

    sizes = [tuple(s) for s in (args.size or [[1024, 2048], [360, 480]])]
    names = args.models or list_models()
    head = ["model", "params (M)"] + [f"GMAC @{h}×{w}" for h, w in sizes]
    rows = []
    for name in names:
        model = create_model(name, args.num_classes, aux=False)
        rows.append([name, f"{count_params(model) / 1e6:.2f}"]
                    + [f"{count_macs(model, s) / 1e9:.1f}" for s in sizes])
    print(f"{args.num_classes} classes, inference graph (no auxiliary heads), batch 1; MACs count "
          "conv/matmul/attention products (torch.utils.flop_counter), not resize/softmax/BN.")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
        for r in [head, *rows]:
            print("  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)
                            for i, (x, w) in enumerate(zip(r, widths, strict=True))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtseg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="parameters and GMAC of every model")
    p.add_argument("--size", nargs=2, type=int, action="append", metavar=("H", "W"),
                   help="input size (repeatable; default 1024 2048 and 360 480)")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--models", nargs="+", choices=list_models(), metavar="MODEL")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=_info)

    from .engine import commands

    p = sub.add_parser("train", help="train a model (config file + key=value overrides)")
    p.add_argument("--config", help="YAML file of training fields (see configs/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config fields")
    p.set_defaults(func=commands.cmd_train)

    def add_inference_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="auto")
        p.add_argument("--mode", choices=["whole", "slide"], default="whole")
        p.add_argument("--crop", nargs=2, type=int, metavar=("H", "W"))
        p.add_argument("--stride", nargs=2, type=int, metavar=("H", "W"))
        p.add_argument("--scales", nargs="+", type=float, default=[1.0])
        p.add_argument("--flip", action="store_true")

    p = sub.add_parser("eval", help="evaluate a checkpoint: mIoU, per-class IoU, boundary F")
    p.add_argument("checkpoint")
    p.add_argument("--split", default="val")
    p.add_argument("--dataset", help="default: the one the model was trained on")
    p.add_argument("--data-root", help="default: the training data root")
    p.add_argument("--tolerance", type=int, default=2, help="boundary F tolerance in pixels")
    p.add_argument("--json", help="output JSON (default: next to the checkpoint)")
    add_inference_options(p)
    p.set_defaults(func=commands.cmd_eval)

    p = sub.add_parser("predict", help="label PNGs and overlays for an image, folder or video")
    p.add_argument("checkpoint")
    p.add_argument("input", help="an image, a folder of images, or a video file")
    p.add_argument("--out", help="output folder (default: predictions/ next to the checkpoint)")
    add_inference_options(p)
    p.set_defaults(func=commands.cmd_predict)

    p = sub.add_parser("demo", help="the main job: train, evaluate, predict, plot")
    p.add_argument("--data", help="a CamVid/Cityscapes/folder data set (default: synthetic)")
    p.add_argument("--model", default="fpn_r18_gai", choices=list_models())
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--out", default="runs")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config fields")
    p.set_defaults(func=commands.cmd_demo)

    from . import bench, export

    p = sub.add_parser("bench", help="inference speed: latency, FPS, GFLOP/s, memory",
                       description=bench.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.configure_parser(p)
    p.set_defaults(func=bench.main)

    p = sub.add_parser("export", help="export a model to ONNX / TorchScript / torch.export",
                       description=export.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    export.configure_parser(p)
    p.set_defaults(func=export.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
