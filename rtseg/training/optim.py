"""The optimiser every run uses: SGD with momentum over two parameter groups (backbone, rest),
stepped every iteration on a poly schedule with an optional linear warm-up."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import TrainConfig


def poly_lambda(cfg: TrainConfig):
    """Learning-rate factor of iteration ``it``: linear warm-up, then (1 − it/iters)^power."""

    def factor(it: int) -> float:
        if it < cfg.warmup_iters:
            return cfg.warmup_ratio + (1 - cfg.warmup_ratio) * it / cfg.warmup_iters
        return max(1 - it / cfg.iters, 0.0) ** cfg.poly_power

    return factor


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Backbone at ``lr·backbone_lr_mult``, the rest at ``lr·head_lr_mult``; frozen ones out."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    backbone = [p for n, p in params if n.startswith("backbone.")]
    head = [p for n, p in params if not n.startswith("backbone.")]
    groups = [{"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult},
              {"params": head, "lr": cfg.lr * cfg.head_lr_mult}]
    return [g for g in groups if g["params"]]


def build_optimiser(model: nn.Module, cfg: TrainConfig
                    ) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD over :func:`param_groups` and its per-iteration :func:`poly_lambda` scheduler."""
    optimizer = torch.optim.SGD(param_groups(model, cfg), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, poly_lambda(cfg))
