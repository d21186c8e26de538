"""The ``train``, ``eval``, ``predict`` and ``demo`` commands (argument parsing in cli.py)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from .. import create_model
from ..data import build_dataset
from ..data.transforms import eval_transforms
from .checkpoint import load_checkpoint
from .config import TrainConfig, load_config, make_config, parse_overrides
from .evaluate import evaluate
from .metrics import format_table
from .predict import predict_path
from .trainer import train


def load_model(ckpt_path: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Model of an rtseg checkpoint, in eval mode on ``device``, and the checkpoint dict."""
    ckpt = load_checkpoint(ckpt_path)
    cfg = ckpt["config"]
    model = create_model(cfg["model"], ckpt["num_classes"], aux=True)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def detect_dataset(root: str | Path) -> str:
    """'cityscapes', 'camvid' or 'folder' from the layout of ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data folder not found")
    if (root / "leftImg8bit").is_dir():
        return "cityscapes"
    if (root / "trainannot").is_dir():
        return "camvid"
    if (root / "images").is_dir() or (root / "train" / "images").is_dir():
        return "folder"
    raise ValueError(f"{root}: not a Cityscapes (leftImg8bit/), CamVid (train/, trainannot/) "
                     "or folder (images/, masks/) layout")


def cmd_train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    config_path = args.config
    if args.resume:
        run = Path(args.resume)
        config_path = config_path or run / "config.yaml"
        overrides += [f"out_dir={run.parent}", f"run_name={run.name}"]
    cfg = load_config(config_path, overrides)
    out = train(cfg, resume=bool(args.resume))
    print(f"run folder: {out}")
    return 0


def run_eval(ckpt_path: str | Path, args: argparse.Namespace, split: str) -> dict[str, Any]:
    device = pick_device(args.device)
    model, ckpt = load_model(ckpt_path, device)
    cfg = ckpt["config"]
    dataset = args.dataset or cfg["dataset"]
    root = args.data_root or cfg["data_root"]
    kwargs: dict[str, Any] = {}
    if dataset == "synthetic":
        kwargs = {"size": tuple(cfg["synthetic_size"]), "num_images":
                  cfg["synthetic_val_images"], "seed": cfg["seed"]}
    ds = build_dataset(dataset, root, split, transform=eval_transforms(), **kwargs)
    if ds.num_classes != ckpt["num_classes"]:
        raise ValueError(f"{ckpt_path}: model has {ckpt['num_classes']} classes, "
                         f"{dataset} has {ds.num_classes}")
    t0 = time.perf_counter()
    res = evaluate(model, ds, device, mode=args.mode, crop=args.crop, stride=args.stride,
                   scales=args.scales, flip=args.flip, boundary_tolerance=args.tolerance)
    res.update(split=split, dataset=dataset, checkpoint=str(ckpt_path), classes=ds.classes,
               seconds=time.perf_counter() - t0, mode=args.mode, scales=list(args.scales),
               flip=args.flip)
    print(f"{dataset} {split}: {res['images']} images, mIoU {100 * res['miou']:.2f}, "
          f"pixel acc {100 * res['pixel_acc']:.2f}, boundary F {100 * res['mbf']:.2f} "
          f"(tolerance {args.tolerance} px)")
    print(format_table(res, ds.classes))
    out = Path(args.json) if args.json else Path(ckpt_path).parent / f"metrics_{split}.json"
    out.write_text(json.dumps(res, indent=2))
    print(f"metrics written to {out}")
    return res


def cmd_eval(args: argparse.Namespace) -> int:
    run_eval(args.checkpoint, args, args.split)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    model, ckpt = load_model(args.checkpoint, device)
    out = Path(args.out or Path(args.checkpoint).parent / "predictions")
    written = predict_path(model, args.input, out, ckpt["palette"], device, mode=args.mode,
                           crop=args.crop, scales=args.scales, flip=args.flip)
    print(f"{len(written)} frame(s) predicted; label PNGs and overlays in {out}")
    return 0


def demo_config(args: argparse.Namespace) -> TrainConfig:
    """The main job's recipe: small enough for a few CPU minutes, same code as any run."""
    values: dict[str, Any] = {"model": args.model, "iters": args.iters, "out_dir": args.out,
                              "run_name": f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
                              "eval_interval": max(args.iters // 4, 1),
                              "ckpt_interval": max(args.iters // 4, 1), "log_interval": 10}
    if args.data:
        values.update(dataset=detect_dataset(args.data), data_root=str(args.data),
                      crop_size=[240, 320], batch_size=8, workers=2)
    else:
        values.update(dataset="synthetic", synthetic_size=[128, 256], crop_size=[128, 256],
                      batch_size=8, workers=1, synthetic_train_images=400,
                      synthetic_val_images=40)
    values.update(parse_overrides(args.overrides))
    return make_config(values, "demo")


def cmd_demo(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    cfg = demo_config(args)
    print(f"rtseg demo: training {cfg.model} on {cfg.dataset}"
          + (f" ({cfg.data_root})" if cfg.data_root else " (built-in synthetic street scenes)")
          + f" for {cfg.iters} iterations on {pick_device(cfg.device)}")
    run = train(cfg)
    t_train = time.perf_counter() - t0
    ckpt = run / "best.pt"
    eval_args = argparse.Namespace(device=cfg.device, dataset=None, data_root=None, mode="whole",
                                   crop=None, stride=None, scales=(1.0,), flip=False,
                                   tolerance=2, json=None)
    res = run_eval(ckpt, eval_args, "test")
    model, meta = load_model(ckpt, pick_device(cfg.device))
    if cfg.dataset == "synthetic":
        src = run / "test_images"
        _write_synthetic_examples(cfg, src, n=4)
    else:
        src = Path(cfg.data_root) / ("test" if cfg.dataset == "camvid" else "leftImg8bit/test")
    written = predict_path(model, src, run / "predictions", meta["palette"],
                           pick_device(cfg.device), limit=4)
    total = time.perf_counter() - t0
    print("\n=== rtseg demo finished ===")
    print(f"model {cfg.model}, data {cfg.dataset}, {cfg.iters} iterations in {t_train:.0f} s "
          f"(total {total:.0f} s)")
    print(f"test mIoU {100 * res['miou']:.2f}  pixel acc {100 * res['pixel_acc']:.2f}  "
          f"boundary F {100 * res['mbf']:.2f}")
    print(f"run folder:   {run}")
    print(f"  checkpoints {run / 'best.pt'}, {run / 'last.pt'}")
    print(f"  log         {run / 'log.jsonl'}")
    print(f"  plot        {run / 'plot.png'}")
    print(f"  metrics     {run / 'metrics_test.json'}")
    print(f"  predictions {run / 'predictions'} ({len(written)} overlays)")
    return 0


def _write_synthetic_examples(cfg: TrainConfig, folder: Path, n: int) -> None:
    """Save a few synthetic test images as PNGs, so prediction reads real files."""
    from PIL import Image

    ds = build_dataset("synthetic", None, "test", size=tuple(cfg.synthetic_size),
                       num_images=n, seed=cfg.seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(ds)):
        image, _ = ds.load(i)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{ds.name(i)}.png")
