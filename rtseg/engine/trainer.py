"""Iteration-based training, in the spirit of CoinCheung/BiSeNet's minimal loop.

SGD with momentum, poly decay stepped every iteration (optional linear warm-up), mixed precision
(bf16 on CPU, fp16 with a GradScaler on CUDA), DDP via ``torchrun`` with a DistributedSampler,
optional SyncBN. Every sample's augmentation is seeded by (seed, epoch, position), the data order
by (seed, epoch), and the checkpoint holds model, optimiser, scheduler, scaler, RNG states and
iteration: a run stopped at iteration k and resumed ends with the same weights as one that was
never stopped. The best checkpoint is chosen on ``val_split`` (never the test split).

Run folder: ``config.yaml``, ``log.jsonl`` (one JSON object per logged step or evaluation),
``last.pt``, ``best.pt``, ``plot.png`` (loss and validation mIoU).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from .. import create_model
from ..data import build_dataset
from ..data.transforms import eval_transforms, train_transforms
from ..losses import build_loss
from . import distributed
from .checkpoint import load_checkpoint, rng_state, save_atomic, set_rng_state
from .config import TrainConfig
from .evaluate import evaluate


class SeededSampler(Sampler):
    """Yields ``(index, sample_seed)`` for one epoch of a DistributedSampler, from ``start``.

    The seed of a sample depends only on (seed, epoch, position), so its augmentation is the
    same whether the epoch is run whole or resumed in the middle, in any worker process.
    """

    def __init__(self, base: DistributedSampler, seed: int, epoch: int, start: int = 0) -> None:
        self.base, self.seed, self.epoch, self.start = base, seed, epoch, start
        base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for pos, index in enumerate(list(self.base)):
            if pos >= self.start:
                yield index, hash((self.seed, self.epoch, pos, self.base.rank)) & 0x7FFFFFFF

    def __len__(self) -> int:
        return max(len(self.base) - self.start, 0)


def poly_lambda(cfg: TrainConfig):
    """Learning-rate factor of iteration ``it``: linear warm-up, then (1 − it/iters)^power."""

    def factor(it: int) -> float:
        if it < cfg.warmup_iters:
            return cfg.warmup_ratio + (1 - cfg.warmup_ratio) * it / cfg.warmup_iters
        return max(1 - it / cfg.iters, 0.0) ** cfg.poly_power

    return factor


def build_data(cfg: TrainConfig, split: str, train: bool):
    mean_std = {}  # transforms' defaults: ImageNet statistics
    if train:
        tf = train_transforms(cfg.crop_size, scale=cfg.scale_range, flip=cfg.flip,
                              jitter=cfg.color_jitter, **mean_std)
    else:
        tf = eval_transforms(**mean_std)
    kwargs: dict[str, Any] = {}
    if cfg.dataset == "synthetic":
        n = cfg.synthetic_train_images if train else cfg.synthetic_val_images
        kwargs = {"size": cfg.synthetic_size, "num_images": n, "seed": cfg.seed}
    return build_dataset(cfg.dataset, cfg.data_root, split, transform=tf, **kwargs)


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    return [{"params": backbone, "lr": cfg.lr},
            {"params": head, "lr": cfg.lr * cfg.head_lr_mult}]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _autocast(cfg: TrainConfig, device: torch.device):
    if not cfg.amp:
        return torch.autocast(device.type, enabled=False)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


class JsonLog:
    """Append-only JSON-lines log, one object per line; only rank 0 writes."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, **row: Any) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")


def run_dir(cfg: TrainConfig) -> Path:
    name = cfg.run_name or f"{cfg.model}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.out_dir) / name


def train(cfg: TrainConfig, resume: bool = False, stop_at: int | None = None) -> Path:
    """Train as ``cfg`` says; return the run folder.

    Args:
        cfg: the configuration; ``cfg.run_name`` fixes the folder (needed to resume).
        resume: continue from ``<run>/last.pt`` if it exists.
        stop_at: stop after this iteration, after writing a checkpoint (simulates a kill).
    """
    info = distributed.setup(cfg.device)
    try:
        return _train(cfg, info, resume, stop_at)
    finally:
        distributed.cleanup()


def _train(cfg: TrainConfig, info: distributed.DistInfo, resume: bool,
           stop_at: int | None) -> Path:
    import yaml
    from tqdm import tqdm

    out = Path(distributed.broadcast_object(str(run_dir(cfg)), info))
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False))
    seed_everything(cfg.seed + info.rank)
    device = info.device
    if cfg.sync_bn and device.type != "cuda":
        raise ValueError("sync_bn=true needs CUDA: PyTorch's SyncBatchNorm does not run on CPU")

    train_set = build_data(cfg, cfg.train_split, train=True)
    val_set = build_data(cfg, cfg.val_split, train=False)
    if cfg.batch_size % info.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the "
                         f"{info.world_size} processes")
    per_rank = cfg.batch_size // info.world_size
    base_sampler = DistributedSampler(train_set, info.world_size, info.rank, shuffle=True,
                                      seed=cfg.seed, drop_last=True)
    iters_per_epoch = len(base_sampler) // per_rank
    if iters_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training images give no full batch of {per_rank} "
                         "per process")

    model = create_model(cfg.model, train_set.num_classes, cfg.pretrained_backbone, aux=True)
    aux_weights = cfg.aux_weights if cfg.aux_weights is not None else model.aux_weights
    model.to(device)
    if cfg.sync_bn and info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = (DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None) if info.enabled else model)
    criterion = build_loss(cfg.loss, aux_weights, ignore_index=train_set.ignore_index,
                           **({"thresh": cfg.ohem_thresh, "min_kept": cfg.ohem_min_kept * per_rank}
                              if cfg.loss == "ohem" else {}))
    optimizer = torch.optim.SGD(param_groups(model, cfg), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lambda(cfg))
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and device.type == "cuda")

    it, best = 0, -1.0
    last = out / "last.pt"
    if resume and last.is_file():
        ckpt = load_checkpoint(last)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"][info.rank] if info.rank < len(ckpt["rng"]) else ckpt["rng"][0])
        it, best = ckpt["iteration"], ckpt["best_miou"]
    log = JsonLog(out / "log.jsonl", info.is_main)
    meta = {"classes": train_set.classes, "palette": [list(c) for c in train_set.palette],
            "num_classes": train_set.num_classes, "config": _plain(cfg.to_dict())}

    def checkpoint(path: Path, extra: dict[str, Any] | None = None) -> None:
        states = [rng_state()]
        if info.enabled:
            states = [None] * info.world_size
            dist.all_gather_object(states, rng_state())
        if info.is_main:
            save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                         "rng": states, "iteration": it, "best_miou": best, **meta,
                         **(extra or {})}, path)

    bar = tqdm(total=cfg.iters, initial=it, disable=not info.is_main, desc=cfg.model,
               dynamic_ncols=True)
    ddp.train()
    t_last, seen = time.perf_counter(), 0
    while it < cfg.iters:
        epoch, start = divmod(it, iters_per_epoch)
        sampler = SeededSampler(base_sampler, cfg.seed, epoch, start * per_rank)
        loader = DataLoader(train_set, per_rank, sampler=sampler, num_workers=cfg.workers,
                            drop_last=True, pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed + epoch))
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with _autocast(cfg, device):
                outputs = ddp(images)
            outputs = (outputs[0].float(), [a.float() for a in outputs[1]])
            loss, parts = criterion(outputs, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            it += 1
            seen += images.shape[0] * info.world_size
            lr = optimizer.param_groups[0]["lr"]
            loss_value = loss.item()  # one device sync per iteration, reused below
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at iteration {it}")
            bar.update(1)
            if it % cfg.log_interval == 0 or it == cfg.iters:
                now = time.perf_counter()
                speed = seen / (now - t_last)
                t_last, seen = now, 0
                bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}",
                                img_s=f"{speed:.1f}")
                log.write(kind="train", iter=it, epoch=epoch, loss=loss_value,
                          **{k: v.item() for k, v in parts.items()}, lr=lr, img_per_s=speed)
            if it % cfg.eval_interval == 0 or it == cfg.iters:
                if info.enabled:  # BN statistics drift per rank; evaluate rank 0's, as saved
                    for buf in model.buffers():
                        dist.broadcast(buf, 0)
                res = evaluate(model, val_set, device, mode=cfg.eval_mode,
                               crop=cfg.eval_crop, distributed_info=info, progress=False)
                ddp.train()
                log.write(kind="val", iter=it, split=cfg.val_split, miou=res["miou"],
                          pixel_acc=res["pixel_acc"], boundary_f=res["mbf"], pixels=res["pixels"])
                if info.is_main:
                    bar.write(f"iter {it}: {cfg.val_split} mIoU {res['miou']:.4f}")
                if res["miou"] > best:
                    best = res["miou"]
                    checkpoint(out / "best.pt", {"val_metrics": res})
            if it % cfg.ckpt_interval == 0 or it == cfg.iters or it == stop_at:
                checkpoint(last)
            if it >= cfg.iters or it == stop_at:
                break
        if it == stop_at:
            break
    bar.close()
    if info.is_main and it >= cfg.iters:
        from .plot import plot_log

        plot_log(out / "log.jsonl", out / "plot.png")
    return out


def _plain(obj: Any) -> Any:
    """Tuples to lists, recursively: YAML/JSON-friendly config dumps."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
