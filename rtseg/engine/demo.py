"""The main job, ``rtseg demo``: train, evaluate the best checkpoint on test, predict, plot.

With no data it trains on the built-in synthetic street scenes (made in memory, nothing to
download); given a folder it detects the layout (Cityscapes, CamVid or a folder data set).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
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


def run_demo(cfg: TrainConfig, examples: int = 4, report: Callable[[str], None] = print,
             clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Train ``cfg``, evaluate ``best.pt`` on test, predict ``examples`` test images.

    Each of the three phases is announced through ``report`` with the time spent so far and an
    estimate of the time left (:func:`time_left`); training and evaluation also show progress
    bars. Returns the run folder, the test metrics, the written overlays and the times in
    seconds.
    """
    from dataclasses import asdict

    from .. import api
    from .predict import predict_path

    t0 = clock()
    report(f"rtseg demo [1/3] training: {cfg.iters} iterations of {cfg.batch_size} crops "
           "(the bar shows this phase's time left)")
    run = api.train(cfg)
    t_train = clock() - t0
    ckpt = run / "best.pt"
    test = api._dataset_for(asdict(cfg), cfg.data_root, None, "test")
    left = time_left(t_train, cfg.iters * cfg.batch_size, len(test), examples)
    report(f"rtseg demo [2/3] evaluation of best.pt on {len(test)} test images; "
           f"{_minutes(clock() - t0)} so far, about {_minutes(left)} left")
    t_eval = clock()
    res = api.evaluate(ckpt, data=test, split="test", device=cfg.device)
    t_eval = clock() - t_eval
    (run / "metrics_test.json").write_text(json.dumps(res, indent=2))
    seg = api.load(ckpt, device=cfg.device)
    if cfg.dataset == "synthetic":
        src = run / "test_images"
        _write_synthetic_examples(cfg, src, n=examples)
    else:
        src = Path(cfg.data_root) / ("test" if cfg.dataset == "camvid" else "leftImg8bit/test")
    left = time_left(t_eval, 0, len(test), examples, measured_inference=True)
    report(f"rtseg demo [3/3] prediction of {examples} test images; {_minutes(clock() - t0)} "
           f"so far, about {_minutes(left)} left")
    written = predict_path(seg, src, run / "predictions", limit=examples)
    return {"run": run, "metrics": res, "overlays": written, "train_seconds": t_train,
            "seconds": clock() - t0}


def time_left(seconds: float, images_seen: int, test_images: int, examples: int,
              measured_inference: bool = False) -> float:
    """Seconds the demo's remaining phases should take, from the last phase's ``seconds``.

    After training (``images_seen`` training crops in ``seconds``): a forward pass costs about a
    third of a training step (forward, backward, update), so evaluation and prediction need
    ``(test_images + examples) · seconds / images_seen / 3``. After evaluation
    (``measured_inference``: ``seconds`` for the ``test_images``): ``examples`` more images at
    the measured rate.
    """
    if measured_inference:
        return examples * seconds / max(test_images, 1)
    return (test_images + examples) * seconds / max(images_seen, 1) / 3


def _minutes(seconds: float) -> str:
    """``"42 s"`` or ``"3.5 min"``."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _write_synthetic_examples(cfg: TrainConfig, folder: Path, n: int) -> None:
    """Save a few synthetic test images as PNGs, so prediction reads real files."""
    from PIL import Image

    ds = build_dataset("synthetic", None, "test", size=tuple(cfg.synthetic_size),
                       num_images=n, seed=cfg.seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(ds)):
        image, _ = ds.load(i)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{ds.name(i)}.png")
