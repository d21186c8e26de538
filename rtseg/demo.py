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

from .data import DataError, SegmentationDataset, detect_dataset, from_config
from .training.config import TrainConfig, make_config


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
        values.update(dataset="synthetic", crop_size=[128, 256], batch_size=8, workers=1,
                      dataset_kwargs={"size": [128, 256],
                                      "num_images": {"train": 400, "val": 40, "test": 40}})
    values.update(overrides)
    return make_config(values, "demo")


def run_demo(cfg: TrainConfig, examples: int = 4, report: Callable[[str], None] = print,
             clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Train ``cfg``, evaluate ``best.pt`` on test (or val, where the data has no test split),
    predict ``examples`` of its images.

    Each of the three phases is announced through ``report`` with the time spent so far and an
    estimate of the time left (:func:`time_left`); training and evaluation also show progress
    bars. Returns the run folder, the scored split and its metrics, the written overlays and the
    times in seconds.
    """
    from . import api
    from .predict import predict_path

    t0 = clock()
    report(f"rtseg demo [1/3] training: {cfg.iters} iterations of {cfg.batch_size} crops "
           "(the bar shows this phase's time left)")
    run = api.train(cfg)
    t_train = clock() - t0
    ckpt = run / "best.pt"
    split, test = scoring_split(cfg)
    left = time_left(t_train, cfg.iters * cfg.batch_size, len(test), examples)
    report(f"rtseg demo [2/3] evaluation of best.pt on {len(test)} {split} images; "
           f"{_minutes(clock() - t0)} so far, about {_minutes(left)} left")
    t_eval = clock()
    res = api.evaluate(ckpt, data=test, split=split, device=cfg.device)
    t_eval = clock() - t_eval
    (run / f"metrics_{split}.json").write_text(json.dumps(res, indent=2))
    seg = api.load(ckpt, device=cfg.device)
    src = run / f"{split}_images"
    write_examples(test, src, n=examples)
    left = time_left(t_eval, 0, len(test), examples, measured_inference=True)
    report(f"rtseg demo [3/3] prediction of {examples} {split} images; {_minutes(clock() - t0)} "
           f"so far, about {_minutes(left)} left")
    written = predict_path(seg, src, run / "predictions", limit=examples)
    return {"run": run, "split": split, "metrics": res, "overlays": written,
            "train_seconds": t_train, "seconds": clock() - t0}


def scoring_split(cfg: TrainConfig) -> tuple[str, SegmentationDataset]:
    """The split the demo scores: ``test``, or the validation split where there is no test."""
    try:
        return "test", from_config(cfg, "test")
    except DataError:
        return cfg.val_split, from_config(cfg, cfg.val_split)


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


def write_examples(ds: SegmentationDataset, folder: Path, n: int) -> None:
    """Save the first ``n`` images of ``ds`` as PNGs named by ``ds.name(i)``, so that prediction
    reads real files whatever the data set's layout (or none: the synthetic scenes)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(min(n, len(ds))):
        image, _ = ds.load(i)
        name = Path(ds.name(i)).name  # Cityscapes names carry their city folder
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{name}.png")
