"""The public functions: ``load`` a checkpoint, ``evaluate`` it, ``train`` a model.

>>> seg = rtseg.load("runs/x/best.pt")          # a Segmenter
>>> labels = seg("street.png")                  # H×W class indices
>>> rtseg.evaluate("runs/x/best.pt", split="test")["miou"]
>>> run = rtseg.train("configs/camvid/fpn_r18_gai.yaml", iters=2000)

Plain keyword functions: the command line (:mod:`rtseg.cli`) and the scripts call them too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import DATASETS, SegmentationDataset, build_dataset, detect_dataset, from_config
from .data.transforms import eval_transforms
from .errors import ConfigError, UsageError
from .inference.evaluate import check_boundary_options, evaluate_dataset
from .inference.tta import TTAOptions
from .segmenter import Segmenter
from .training.checkpoint import load_model
from .training.config import TrainConfig, load_config, make_config, upgrade_values
from .utils import resolve_device


def load(path: str | Path, device: str | torch.device = "auto", backend: str = "auto",
         threads: int | None = None, **options: Any) -> Segmenter:
    """A :class:`Segmenter` for an rtseg checkpoint (``.pt``) or an exported ``.onnx`` file.

    Args:
        path: ``best.pt``/``last.pt`` of a run, or a file written by :func:`rtseg.export`
            (its metadata holds the classes, palette and normalisation).
        device: for a checkpoint, ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``;
            exported files run on the CPU.
        backend: ``"torch"`` (checkpoints), ``"onnxruntime"`` or ``"openvino"`` (exported
            files), or ``"auto"``: torch for a checkpoint, the first installed runtime of
            :func:`rtseg.deploy.runtimes.auto_order` for an exported file.
        threads: intra-op threads of an exported file's runtime (default: the runtime's).
        **options: the default test-time options (``mode``, ``crop``, ``stride``, ``scales``,
            ``flip``).

    Raises ``CheckpointError`` for a file that is not a readable rtseg checkpoint or export,
    ``UsageError`` for a backend that is not installed or does not fit the file.
    """
    from .deploy.metadata import is_exported, read_metadata
    from .deploy.runtimes import RUNTIMES, pick_backend

    # an exported file's metadata is read once: "auto" chooses by it, the Segmenter needs it
    auto_exported = is_exported(path) and backend == "auto"
    meta = read_metadata(path) if auto_exported else None
    name = pick_backend(path, backend, meta)
    if name == "torch":
        dev = resolve_device(device)
        model, ckpt = load_model(path, dev)
        return Segmenter(model, ckpt["classes"], ckpt["palette"], dev,
                         name=ckpt["config"]["model"], **options)
    if resolve_device(device).type != "cpu" and device != "auto":
        raise UsageError(f"{path}: exported files run on the CPU here, not {device}")
    meta = meta or read_metadata(path)
    model = RUNTIMES[name](path, threads)
    if meta.get("dynamic") is False and meta.get("trace_size"):
        model.static_shape = (meta.get("batch", 1), 3, *meta["trace_size"])
    return Segmenter(model, meta["classes"], meta["palette"], "cpu", mean=meta["mean"],
                     std=meta["std"], name=f"{meta['model']} ({name})", **options)


def _dataset_for(ckpt_config: dict[str, Any] | None, data: Any, dataset: str | None,
                 split: str) -> SegmentationDataset:
    """The evaluation data set: given, found at ``data``, or the checkpoint's own."""
    if isinstance(data, SegmentationDataset):
        return data
    if data is not None:
        name = dataset or detect_dataset(data)
        return build_dataset(name, data, split, transform=eval_transforms())
    if ckpt_config:
        cfg = upgrade_values(ckpt_config)
        return from_config(cfg if dataset is None else {**cfg, "dataset": dataset}, split)
    if dataset in DATASETS and not DATASETS[dataset].needs_root:
        return from_config({"dataset": dataset}, split)
    raise UsageError("evaluate a model without its training record: give data=PATH (or a "
                     "data set), or a data set made in memory (dataset='synthetic')")


def evaluate(
    model_or_path: str | Path | Segmenter | nn.Module,
    data: str | Path | SegmentationDataset | None = None,
    split: str = "val",
    dataset: str | None = None,
    device: str | torch.device = "auto",
    mode: str = "whole",
    crop: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    short_side: int | None = None,
    long_side: int | None = None,
    window_average: str = "probs",
    tolerance: int | Sequence[int] = 2,
    boundary: str = "pooled",
    bf_ratio: float = 0.0075,
    biou_ratio: float | None = 0.02,
    limit: int | None = None,
    progress: bool = True,
    backend: str = "auto",
) -> dict[str, Any]:
    """mIoU, per-class IoU, pixel accuracy, boundary F and Boundary IoU on a data split.

    Args:
        model_or_path: a checkpoint path, an exported ``.onnx`` file, a :class:`Segmenter`
            or an eval-mode model. The images are normalised as in training (ImageNet
            statistics) and predicted with the options given here, not a Segmenter's defaults;
            a temporal model is scored on clips of each frame and its past frames.
        data: a data set folder (its layout is detected unless ``dataset`` names it), a
            :class:`~rtseg.data.SegmentationDataset`, or None for the checkpoint's training data.
        split: the split to evaluate.
        mode, crop, stride, scales, flip: test-time options (see ``predict_probs``).
        short_side: predict each image resized to this shorter side and score the prediction
            resized back (ADE20K's protocol: ``short_side=512``); None: at its own size.
        long_side, window_average: mmsegmentation's cap on the longer side (2048 for ADE20K)
            and its averaging of sliding windows' logits (see ``docs/evaluation.md``).
        tolerance: boundary F-score tolerance in pixels of the ``"pooled"`` protocol;
            several (``(1, 2, 3)``) add ``mbf_at``/``bf_at`` with one score per tolerance, the
            first being ``mbf``.
        boundary: the boundary F protocol of ``mbf``/``bf``: ``"pooled"`` (rtseg's: counts
            pooled over the data set, square tolerance) or ``"per_image"`` (Csurka et al.'s
            BF of the SegNet/CamVid papers: per image, Euclidean tolerance of ``bf_ratio`` ×
            the image diagonal); see ``docs/evaluation.md``.
        bf_ratio: the ``"per_image"`` tolerance as a fraction of the image diagonal.
        biou_ratio: Boundary IoU's band width d as a fraction of the image diagonal (``biou``,
            ``biou_per_class``); None leaves Boundary IoU out.
        limit: evaluate only the first ``limit`` images.
        backend: for an exported ``.onnx`` file, its runtime (see :func:`load`).

    Returns:
        The metrics (``miou``, ``iou``, ``pixel_acc``, ``mbf``, ``bf_protocol``, ``biou``, …)
        with ``classes``, ``split``, ``dataset``, ``images``, ``seconds`` and the options used.
    """
    from .deploy.metadata import is_exported

    check_boundary_options(boundary, bf_ratio, biou_ratio)  # before a model is loaded
    ckpt_cfg, checkpoint, k = None, None, None
    options = TTAOptions(mode=mode, crop=crop, stride=stride, scales=scales, flip=flip,
                         short_side=short_side, long_side=long_side,
                         window_average=window_average)
    if isinstance(model_or_path, (str, Path)) and (
            is_exported(model_or_path) or backend not in ("auto", "torch")):
        model_or_path = load(model_or_path, device, backend)  # its data must be given
    if isinstance(model_or_path, (str, Path)):
        checkpoint = str(model_or_path)
        model, ckpt = load_model(model_or_path, resolve_device(device))
        ckpt_cfg, k, dev = ckpt["config"], ckpt["num_classes"], next(model.parameters()).device
    elif isinstance(model_or_path, Segmenter):
        model, k, dev = model_or_path.model, model_or_path.num_classes, model_or_path.device
    elif isinstance(model_or_path, nn.Module):
        model, dev = model_or_path, next(model_or_path.parameters()).device
    else:
        raise UsageError(f"cannot evaluate a {type(model_or_path).__name__}; give a checkpoint "
                         "path, a Segmenter or a model")
    ds = _dataset_for(ckpt_cfg, data, dataset, split)
    if getattr(model, "temporal", False) and not hasattr(ds, "context"):
        from .data.clips import make_clips  # a video model is scored on clips

        ds = make_clips(ds, model.past)
    if k is not None and k != ds.num_classes:
        raise UsageError(f"{checkpoint or 'the model'} predicts {k} classes but the "
                         f"{type(ds).__name__} data has {ds.num_classes}")
    t0 = time.perf_counter()
    res = evaluate_dataset(model, ds, dev, options, boundary_tolerance=tolerance,
                           boundary=boundary, bf_ratio=bf_ratio, biou_ratio=biou_ratio,
                           progress=progress, limit=limit)
    res.update(split=split, dataset=type(ds).__name__.lower(), checkpoint=checkpoint,
               classes=ds.classes, seconds=time.perf_counter() - t0,
               **{**options.as_dict(), "scales": list(options.scales)}, tolerance=tolerance)
    return res


def train_config(
    config: str | Path | TrainConfig | dict[str, Any] | None = None,
    resume: str | Path | None = None,
    **overrides: Any,
) -> TrainConfig:
    """The checked configuration :func:`train` runs (same arguments), without running it."""
    if resume is not None:
        run = Path(resume).resolve()
        if not (run / "config.yaml").is_file() and config is None:
            raise ConfigError(f"{run}: not a run folder (no config.yaml)")
        config = config if config is not None else run / "config.yaml"
        overrides = {**overrides, "out_dir": str(run.parent), "run_name": run.name}
    if isinstance(config, TrainConfig):
        base = config.to_dict()
    elif isinstance(config, dict):
        base = dict(config)
    else:
        base = load_config(config).to_dict()
    return make_config({**base, **overrides}, str(config) if config is not None else "train()")


def train(
    config: str | Path | TrainConfig | dict[str, Any] | None = None,
    resume: str | Path | None = None,
    **overrides: Any,
) -> Path:
    """Train a model; returns the run folder (``best.pt``, ``last.pt``, ``log.jsonl``, …).

    Args:
        config: a YAML file of :class:`~rtseg.training.config.TrainConfig` fields, a config,
            a dict of fields, or None for the defaults.
        resume: a run folder to continue exactly (its ``config.yaml`` is the default config).
        **overrides: config fields as Python values (``iters=2000``, ``crop_size=(256, 512)``).
    """
    from .training.trainer import run_training

    cfg = train_config(config, resume, **overrides)
    return run_training(cfg, resume=resume is not None)
