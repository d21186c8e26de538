"""``rtseg convert``: an official GAIN, FANet or IFA checkpoint → an rtseg checkpoint."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Convert an official checkpoint into an rtseg checkpoint (read by rtseg.load, rtseg eval and
rtseg predict), with the official-compatible model options set so that it computes the official
network's outputs. Sources:

  gain   simpleseg (hustvl/simpleseg) ResCLANet / DFCLANet files (state dict under 'model')
         -> gain_r18 (context, fuse3x3 read from the weights; dilate: on with context and
         fuse3x3, the official dilated Cityscapes config; pass --option dilate=false for the
         undilated one) or gain_df2.
  fanet  FANet's Train/ code (feinanshan/FANet, ptsemseg FANet; 'model_state') -> fanet18 or
         fanet34 with mean=false, up_padding=true, align_corners=true (--model fanet18_temp
         also fits).
  ifa    IFA (hzhupku/IFA, ModelBuilder with fpn_ifa, no_aspp; 'model_state') -> ifa_r50 with
         align_corners=true.

Every official key is mapped or dropped with its reason (loss modules; FANet's level-8 smooth
and level-4 up, built but never run); an unknown, missing or misshapen key is an error. Class
names and colours: --dataset, or the data set with the checkpoint's class count (19
cityscapes, 11 camvid, 150 ade20k, 59 pascal_context, 171 coco_stuff), or --classes."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..convert import SOURCES

    p = sub.add_parser("convert", help="official GAIN/FANet/IFA checkpoint -> rtseg checkpoint",
                       description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint", help="the official file (.pth/.pkl)")
    p.add_argument("output", help="the rtseg checkpoint to write (.pt)")
    p.add_argument("--source", required=True, choices=SOURCES, help="which official code")
    p.add_argument("--model", help="rtseg model to build (default: read from the weights)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option overriding the official-compatible one (YAML value; "
                        "repeatable), e.g. dilate=false")
    p.add_argument("--dataset", help="class names and colours of this data set")
    p.add_argument("--classes", nargs="+", metavar="NAME", help="class names (in order)")
    p.add_argument("--trust", action="store_true",
                   help="unpickle arbitrary objects (only for files you trust)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..convert import convert
    from ..training.config import parse_overrides

    conv = convert(args.checkpoint, args.output, args.source, model=args.model,
                   options=parse_overrides(args.option), dataset=args.dataset,
                   classes=args.classes, trust=args.trust)
    opts = ", ".join(f"{k}={v}" for k, v in conv.options.items())
    print(f"{args.output}: {conv.model} ({opts}), {conv.num_classes} classes; "
          f"{conv.mapped} tensors mapped, {len(conv.dropped)} dropped, {len(conv.filled)} "
          "filled")
    for key, why in conv.dropped.items():
        print(f"  dropped {key}: {why}")
    for key, why in conv.filled.items():
        print(f"  filled {key}: {why}")
    return 0
