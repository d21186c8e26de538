"""The main job, ``rtseg demo``: train, evaluate the best checkpoint on test, predict, plot.

With no data it trains on the built-in synthetic street scenes (made in memory, nothing to
download); given a folder it detects the layout (Cityscapes, CamVid or a folder data set).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..data import build_dataset, detect_dataset
from .config import TrainConfig, make_config


def demo_config(data: str | Path | None = None, model: str = "fpn_r18_gai", iters: int = 300,
                out: str | Path = "runs", **overrides: Any) -> TrainConfig:
    """The main job's recipe: small enough for a few CPU minutes, same code as any run."""
    values: dict[str, Any] = {"model": model, "iters": iters, "out_dir": str(out),
                              "run_name": f"demo-{time.strftime('%Y%m%d-%H%M%S')}",
                              "eval_interval": max(iters // 4, 1),
                              "ckpt_interval": max(iters // 4, 1), "log_interval": 10}
    if data is not None:
        values.update(dataset=detect_dataset(data), data_root=str(data),
                      crop_size=[240, 320], batch_size=8, workers=2)
    else:
        values.update(dataset="synthetic", synthetic_size=[128, 256], crop_size=[128, 256],
                      batch_size=8, workers=1, synthetic_train_images=400,
                      synthetic_val_images=40)
    values.update(overrides)
    return make_config(values, "demo")


def run_demo(cfg: TrainConfig, examples: int = 4) -> dict[str, Any]:
    """Train ``cfg``, evaluate ``best.pt`` on test, predict ``examples`` test images.

    Returns the run folder, the test metrics, the written overlays and the times in seconds.
    """
    from .. import api
    from .predict import predict_path

    t0 = time.perf_counter()
    run = api.train(cfg)
    t_train = time.perf_counter() - t0
    ckpt = run / "best.pt"
    res = api.evaluate(ckpt, data=cfg.data_root if cfg.data_root else None, split="test",
                       device=cfg.device)
    (run / "metrics_test.json").write_text(json.dumps(res, indent=2))
    seg = api.load(ckpt, device=cfg.device)
    if cfg.dataset == "synthetic":
        src = run / "test_images"
        _write_synthetic_examples(cfg, src, n=examples)
    else:
        src = Path(cfg.data_root) / ("test" if cfg.dataset == "camvid" else "leftImg8bit/test")
    written = predict_path(seg, src, run / "predictions", limit=examples)
    return {"run": run, "metrics": res, "overlays": written, "train_seconds": t_train,
            "seconds": time.perf_counter() - t0}


def _write_synthetic_examples(cfg: TrainConfig, folder: Path, n: int) -> None:
    """Save a few synthetic test images as PNGs, so prediction reads real files."""
    from PIL import Image

    ds = build_dataset("synthetic", None, "test", size=tuple(cfg.synthetic_size),
                       num_images=n, seed=cfg.seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(ds)):
        image, _ = ds.load(i)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{ds.name(i)}.png")
