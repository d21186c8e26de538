"""``rtseg train`` and ``rtseg demo`` (the main job)."""

from __future__ import annotations

import argparse

from ..registry import list_models
from .types import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (config file + key=value overrides)")
    p.add_argument("--config", help="YAML file of training fields (see configs/)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config fields")
    p.set_defaults(func=run_train)

    p = sub.add_parser("demo", help="the main job: train, evaluate, predict, plot")
    p.add_argument("--data", help="a CamVid/Cityscapes/folder data set (default: synthetic)")
    p.add_argument("--model", default="fpn_r18_gai", choices=list_models(), metavar="MODEL")
    p.add_argument("--iters", type=positive_int, default=300)
    p.add_argument("--out", default="runs")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override config fields")
    p.set_defaults(func=run_demo)


def run_train(args: argparse.Namespace) -> int:
    from ..api import train, train_config
    from ..training.config import parse_overrides

    cfg = train_config(args.config, args.resume, **parse_overrides(args.overrides))
    source = (f"--resume {args.resume}" if args.resume else f"--config {args.config}"
              if args.config else "no --config: the defaults")
    data = cfg.data_root or "built-in synthetic street scenes"
    print(f"rtseg train ({source}{' and overrides' if args.overrides else ''}): {cfg.model} on "
          f"{cfg.dataset} ({data}), {cfg.iters} iterations of batch {cfg.batch_size}, crop "
          f"{cfg.crop_size[0]}×{cfg.crop_size[1]}, device {cfg.device}, into {cfg.out_dir}/",
          flush=True)
    run = train(cfg, resume=args.resume)
    print(f"run folder: {run}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from ..demo import demo_config, run_demo
    from ..training.config import parse_overrides
    from ..utils import percent

    cfg = demo_config(args.data, args.model, args.iters, args.out,
                      **parse_overrides(args.overrides))
    where = f" ({cfg.data_root})" if cfg.data_root else " (built-in synthetic street scenes)"
    print(f"rtseg demo: training {cfg.model} on {cfg.dataset}{where} for {cfg.iters} "
          f"iterations")
    out = run_demo(cfg)
    run, res, split = out["run"], out["metrics"], out["split"]
    print("\n=== rtseg demo finished ===")
    print(f"model {cfg.model}, data {cfg.dataset}, {cfg.iters} iterations in "
          f"{out['train_seconds']:.0f} s (total {out['seconds']:.0f} s)")
    print(f"{split} mIoU {percent(res['miou'])}  pixel acc {percent(res['pixel_acc'])}  "
          f"boundary F {percent(res['mbf'])}")
    print(f"run folder:   {run}")
    print(f"  checkpoints {run / 'best.pt'}, {run / 'last.pt'}")
    print(f"  log         {run / 'log.jsonl'}")
    print(f"  plot        {run / 'plot.png'}")
    print(f"  metrics     {run / f'metrics_{split}.json'}")
    print(f"  predictions {run / 'predictions'} ({len(out['overlays'])} overlays)")
    return 0
