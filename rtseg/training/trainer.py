"""Iteration-based training, in the spirit of CoinCheung/BiSeNet's minimal loop.

SGD with momentum, poly decay stepped every iteration (optional linear warm-up), mixed precision
(bf16 on CPU, fp16 with a GradScaler on CUDA), DDP via ``torchrun`` with a DistributedSampler,
optional SyncBN. Every sample's augmentation is seeded by (seed, epoch, position), the data order
by (seed, epoch), and the checkpoint holds model, optimiser, scheduler, scaler, RNG states and
iteration: a run stopped at iteration k and resumed ends with the same weights as one that was
never stopped. The best checkpoint is chosen on ``val_split`` (never the test split).

A model can start from another run's weights (``init_from``) and have parts frozen (``freeze``,
see :mod:`rtseg.training.weights`). The configuration, model and data are all checked before the
run folder is created.

Run folder: ``config.yaml``, ``log.jsonl`` (one JSON object per logged step or evaluation),
``last.pt``, ``best.pt``, ``plot.png`` (loss and validation mIoU), ``tb/`` with
``tensorboard=true``, ``init_from.json`` with ``init_from``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from .. import distributed
from ..data import DataError, from_config
from ..data.io import worker_message
from ..errors import CheckpointError, ConfigError, RunInterrupted, TrainingError, first_line
from ..inference.evaluate import evaluate_dataset
from ..losses import build_loss
from ..registry import create_model
from ..utils import autocast, percent
from . import weights
from .checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from .class_weights import record_class_weights, run_class_weights
from .config import TrainConfig
from .loader import SeededSampler, loader_batches, quiet_worker
from .optim import build_optimiser
from .runlog import RunLog


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_dir(cfg: TrainConfig) -> Path:
    name = cfg.run_name or f"{cfg.model}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.out_dir) / name


def run_training(cfg: TrainConfig, resume: bool = False, stop_at: int | None = None) -> Path:
    """Train as ``cfg`` says; return the run folder.

    Args:
        cfg: the configuration; ``cfg.run_name`` fixes the folder (needed to resume).
        resume: continue from ``<run>/last.pt`` if it exists.
        stop_at: stop after this iteration, after writing a checkpoint (simulates a kill).
    """
    info = distributed.setup(cfg.device)
    try:
        return Trainer(cfg, info, resume).fit(stop_at)
    finally:
        distributed.cleanup()


class Trainer:
    """One training run: built (and checked) by ``__init__``, run by :meth:`fit`."""

    def __init__(self, cfg: TrainConfig, info: distributed.DistInfo, resume: bool) -> None:
        self.cfg, self.info, self.device = cfg, info, info.device
        if cfg.sync_bn and self.device.type != "cuda":
            raise ConfigError("sync_bn=true needs CUDA: PyTorch's SyncBatchNorm does not run "
                              "on CPU; add sync_bn=false")
        seed_everything(cfg.seed + info.rank)
        self.train_set = from_config(cfg, cfg.train_split, train=True)
        self.val_set = from_config(cfg, cfg.val_split, train=False)
        self._build_sampler()
        self._build_model()
        self._build_optimiser()
        self.it, self.best = 0, -1.0
        self.out = Path(distributed.broadcast_object(str(run_dir(cfg)), info))
        if cfg.tensorboard and info.is_main:
            RunLog.require_tensorboard()  # before the run folder exists
        self._make_run_dir()
        if resume and (self.out / "last.pt").is_file():
            self._restore(self.out / "last.pt")
        self.log = RunLog(self.out / "log.jsonl", info.is_main, cfg.tensorboard,
                          start=self.it)

    # ---- building

    def _build_sampler(self) -> None:
        cfg, info = self.cfg, self.info
        if cfg.batch_size % info.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} is not divisible by the "
                              f"{info.world_size} processes")
        self.per_rank = cfg.batch_size // info.world_size
        self.base_sampler = DistributedSampler(self.train_set, info.world_size, info.rank,
                                               shuffle=True, seed=cfg.seed, drop_last=True)
        self.iters_per_epoch = len(self.base_sampler) // self.per_rank
        if self.iters_per_epoch == 0:
            raise ConfigError(f"{len(self.train_set)} training images give no full batch of "
                              f"{self.per_rank} per process")

    def _build_model(self) -> None:
        cfg = self.cfg
        self.class_weights = run_class_weights(cfg, self.train_set)  # before clips wrap it
        model = create_model(cfg.model, self.train_set.num_classes, cfg.pretrained_backbone,
                             aux=True, **cfg.model_kwargs)
        self.init_report = (weights.init_from(model, cfg.init_from, cfg.init_parts)
                            if cfg.init_from else None)
        self.aux_weights = cfg.aux_weights if cfg.aux_weights is not None else model.aux_weights
        aux_kinds = tuple(getattr(model, "aux_kinds", ("seg",) * len(model.aux_weights)))
        if len(self.aux_weights) != len(aux_kinds):
            raise ConfigError(f"aux_weights {list(self.aux_weights)}: {cfg.model} has "
                              f"{len(aux_kinds)} auxiliary output(s) ({', '.join(aux_kinds)})")
        if getattr(model, "temporal", False):  # clips: a labelled frame and its past frames
            from ..data.clips import make_clips

            self.train_set = make_clips(self.train_set, model.past)
            self.val_set = make_clips(self.val_set, model.past)
        model.to(self.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        if cfg.sync_bn and self.info.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # after the SyncBN conversion, which makes new BN modules without freeze's hooks
        self.frozen = weights.freeze(model, cfg.freeze) if cfg.freeze else []
        self.model = model
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.ddp = DistributedDataParallel(model, device_ids=ids) if self.info.enabled else model
        ohem = {"thresh": cfg.ohem_thresh, "min_kept": cfg.ohem_min_kept * self.per_rank}
        self.criterion = build_loss(cfg.loss, self.aux_weights, aux_kinds=aux_kinds,
                                    ignore_index=self.train_set.ignore_index,
                                    weight=self.class_weights, lovasz_weight=cfg.lovasz_weight,
                                    **(ohem if cfg.loss == "ohem" else {}))

    def _build_optimiser(self) -> None:
        cfg = self.cfg
        self.optimizer, self.scheduler = build_optimiser(self.model, cfg)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and self.device.type == "cuda")

    def _make_run_dir(self) -> None:
        import yaml

        self.created = self.info.is_main and not self.out.exists()
        if not self.info.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        for stale in self.out.glob(".*.pt.*.tmp"):  # a checkpoint write a kill interrupted
            stale.unlink(missing_ok=True)
        (self.out / "config.yaml").write_text(
            yaml.safe_dump(_plain(self.cfg.to_dict()), sort_keys=False))
        if self.init_report is not None:
            (self.out / "init_from.json").write_text(json.dumps(self.init_report, indent=1))
            print(weights.summarize(self.init_report, self.cfg.init_from))
        if self.class_weights is not None:
            print(record_class_weights(self.out, self.train_set.classes, self.class_weights))
        if self.frozen:
            print(f"frozen: {', '.join(self.frozen)}; {weights.trainable(self.model):,} "
                  "trainable parameters")

    def _restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            self.scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: cannot resume with this configuration (the model, "
                                  f"freeze or learning-rate groups differ from the run's: "
                                  f"{first_line(e)})") from None
        rank = self.info.rank
        set_rng_state(ckpt["rng"][rank] if rank < len(ckpt["rng"]) else ckpt["rng"][0])
        self.it, self.best = ckpt["iteration"], ckpt["best_miou"]

    # ---- running

    def fit(self, stop_at: int | None = None) -> Path:
        """Train from ``self.it`` to ``cfg.iters`` (or ``stop_at``); return the run folder."""
        from tqdm import tqdm

        cfg = self.cfg
        self.bar = tqdm(total=cfg.iters, initial=self.it, disable=not self.info.is_main,
                        desc=cfg.model, dynamic_ncols=True)
        self.ddp.train()
        self._t_last, self._seen = time.perf_counter(), 0
        try:
            try:
                with self._signals():
                    while self.it < cfg.iters and self.it != stop_at and not self._agree()[0]:
                        self._epoch(stop_at)
                if self._agree()[0] and self.it < cfg.iters:  # a finished run is not interrupted
                    self._interrupted()
            finally:  # an error message then starts on a line of its own
                self.bar.close()
                self.log.close()
        except BaseException:
            self._discard_unsaved()
            raise
        if self.info.is_main and self.it >= cfg.iters:
            from .plot import plot_log

            plot_log(self.out / "log.jsonl", self.out / "plot.png")
        return self.out

    def _discard_unsaved(self) -> None:
        """Remove the run folder this run created when the run failed before saving anything
        (nothing in it to resume or use)."""
        if self.created and not any((self.out / n).is_file() for n in ("last.pt", "best.pt")):
            shutil.rmtree(self.out, ignore_errors=True)

    def _epoch(self, stop_at: int | None) -> None:
        """The rest of the current epoch, up to ``cfg.iters``, ``stop_at`` or a signal."""
        epoch, start = divmod(self.it, self.iters_per_epoch)
        try:
            with loader_batches(self._loader(epoch, start)) as batches:
                self._steps(batches, epoch, stop_at)
        except DataError as e:  # from a loader worker: its message, not its traceback
            raise DataError(worker_message(e)) from None

    def _steps(self, batches: Iterator, epoch: int, stop_at: int | None) -> None:
        cfg = self.cfg
        for images, labels in batches:
            loss, parts = self._step(images, labels)
            stop, diverged = self._agree(not math.isfinite(loss))
            if diverged:  # every process stops here, before anything is saved
                raise TrainingError(
                    f"loss is {loss} at iteration {self.it + 1}; stopped without saving it "
                    f"({self.out / 'last.pt'} is unchanged): lower lr, add warmup_iters, "
                    "or check the data")
            self.it += 1
            self.bar.update(1)
            if self.it % cfg.log_interval == 0 or self.it == cfg.iters:
                self._log_train(epoch, loss, parts)
            if self.it % cfg.eval_interval == 0 or self.it == cfg.iters:
                self._validate()
            if self.it % cfg.ckpt_interval == 0 or self.it in (cfg.iters, stop_at):
                self._checkpoint(self.out / "last.pt")
            if self.it >= cfg.iters or self.it == stop_at or stop:
                break

    @contextlib.contextmanager
    def _signals(self):
        """SIGINT/SIGTERM set a flag: the run stops after the current step with last.pt
        written. A second signal acts at once (the previous handler)."""
        self._stop_signal = 0
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            self._stop_signal = signum
            for s, h in saved.items():
                signal.signal(s, h)

        for s in saved:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in saved.items():
                signal.signal(s, h)

    def _agree(self, diverged: bool = False) -> tuple[bool, bool]:
        """(stop signal, non-finite loss) of any process, agreed over DDP ranks every step, so
        that every process stops at the same iteration and takes the same path."""
        if not self.info.enabled:
            return bool(self._stop_signal), diverged
        flags = torch.tensor([self._stop_signal, int(diverged)], device=self.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        self._stop_signal = int(flags[0].item())
        return bool(self._stop_signal), bool(flags[1].item())

    def _interrupted(self) -> None:
        self._checkpoint(self.out / "last.pt")
        name = signal.Signals(self._stop_signal).name
        raise RunInterrupted(f"stopped by {name} at iteration {self.it}; {self.out / 'last.pt'} "
                             f"written: continue with rtseg train --resume {self.out}",
                             self._stop_signal)

    def _loader(self, epoch: int, start: int) -> DataLoader:
        cfg = self.cfg
        sampler = SeededSampler(self.base_sampler, cfg.seed, epoch, start * self.per_rank)
        return DataLoader(self.train_set, self.per_rank, sampler=sampler,
                          num_workers=cfg.workers, drop_last=True, worker_init_fn=quiet_worker,
                          pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(cfg.seed + epoch))

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict]:
        """One optimisation step; returns the loss (one device sync) and its parts."""
        images = images.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(self.device, non_blocking=True)
        self._seen += images.shape[0] * self.info.world_size
        with autocast(self.device, "amp" if self.cfg.amp else "fp32"):
            outputs = self.ddp(images)
        outputs = (outputs[0].float(), [a.float() for a in outputs[1]])
        loss, parts = self.criterion(outputs, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item(), parts

    def _log_train(self, epoch: int, loss: float, parts: dict) -> None:
        now = time.perf_counter()
        speed = self._seen / (now - self._t_last)
        self._t_last, self._seen = now, 0
        lr = self.cfg.lr * self.scheduler.lr_lambdas[0](self.it)  # base lr, before the mults
        self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", img_s=f"{speed:.1f}")
        self.log.write("train", self.it, epoch=epoch, loss=loss,
                       **{k: v.item() for k, v in parts.items()}, lr=lr, img_per_s=speed)

    def _validate(self) -> None:
        cfg = self.cfg
        if self.info.enabled:  # BN statistics drift per rank; evaluate rank 0's, as saved
            for buf in self.model.buffers():
                dist.broadcast(buf, 0)
        res = evaluate_dataset(self.model, self.val_set, self.device, mode=cfg.eval_mode,
                       crop=cfg.eval_crop, scales=(cfg.val_scale,),
                       distributed_info=self.info, progress=True)
        self.ddp.train()
        self.log.write("val", self.it, split=cfg.val_split, miou=res["miou"],
                       pixel_acc=res["pixel_acc"], boundary_f=res["mbf"], pixels=res["pixels"])
        if self.info.is_main:
            self.bar.write(f"iter {self.it}: {cfg.val_split} mIoU {percent(res['miou'])}")
        if res["miou"] > self.best:
            self.best = res["miou"]
            self._checkpoint(self.out / "best.pt", {"val_metrics": res})

    def _checkpoint(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        states = [rng_state()]
        if self.info.enabled:
            states = [None] * self.info.world_size
            dist.all_gather_object(states, rng_state())
        if not self.info.is_main:
            return
        ts = self.train_set
        save_atomic({"format": CHECKPOINT_FORMAT, "model": self.model.state_dict(),
                     "optimizer": self.optimizer.state_dict(),
                     "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                     "rng": states, "iteration": self.it, "best_miou": self.best,
                     "classes": ts.classes, "palette": [list(c) for c in ts.palette],
                     "num_classes": ts.num_classes, "config": _plain(self.cfg.to_dict()),
                     **(extra or {})}, path)


def _plain(obj: Any) -> Any:
    """Tuples to lists, recursively: YAML/JSON-friendly config dumps."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


train = run_training  # one-release alias (``rtseg.train`` is the public call)
