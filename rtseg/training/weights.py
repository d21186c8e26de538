"""Starting from another run's weights (``init_from``) and freezing parts of a model (``freeze``).

``init_from`` copies every tensor of a checkpoint's model whose name and shape match the new
model's; the rest keeps its fresh initialisation. This is how a decoder with another upsampler
is put on a trained backbone: the backbone's tensors match by name, the new head's do not.

``freeze`` turns a part of the model (a top-level child such as ``backbone``) into a fixed
feature extractor: no parameter of it requires a gradient (so the optimiser leaves it alone and
autograd records nothing inside it: its forward costs what a ``no_grad`` forward costs), and
every module in it runs in eval mode even while the model trains (BatchNorm uses and keeps its
running statistics, dropout is off). The weights and buffers of a frozen part therefore stay
bit-identical through training.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ConfigError
from .checkpoint import load_checkpoint


def init_from(model: nn.Module, path: str | Path,
              parts: str | None = None) -> dict[str, list[str]]:
    """Copy the matching tensors of the rtseg checkpoint ``path`` into ``model``.

    ``parts`` (comma-separated top-level names, e.g. ``"backbone"``) limits the copy to those
    parts of the model; the others keep their initialisation.

    Returns:
        ``{"copied": [name, ...], "skipped": ["name (reason)", ...], "unused": [name, ...]}``:
        copied tensors, the model's tensors left as initialised (missing there, or another
        shape: both shapes are named), and the checkpoint's tensors the model has no place for.
    """
    theirs = load_checkpoint(path)["model"]
    own = model.state_dict()
    wanted = _parts(model, parts) if parts else None
    copied, skipped = [], []
    for name, tensor in own.items():
        src = theirs.get(name)
        if wanted is not None and name.split(".")[0] not in wanted:
            skipped.append(f"{name} (not in init_parts)")
        elif src is None:
            skipped.append(f"{name} (not in the checkpoint)")
        elif src.shape != tensor.shape:
            skipped.append(f"{name} (shape {tuple(src.shape)} in the checkpoint, "
                           f"{tuple(tensor.shape)} here)")
        else:
            copied.append(name)
    model.load_state_dict({k: theirs[k] for k in copied}, strict=False)
    return {"copied": copied, "skipped": skipped, "unused": sorted(set(theirs) - set(own))}


def summarize(report: dict[str, list[str]], path: str | Path) -> str:
    """A few readable lines: copied tensors counted per top-level part, every skipped one."""
    parts = Counter(name.split(".")[0] for name in report["copied"])
    lines = [f"init_from {path}: copied {len(report['copied'])} tensors ("
             + ", ".join(f"{k}: {v}" for k, v in sorted(parts.items())) + f"), "
             f"{len(report['skipped'])} left as initialised, {len(report['unused'])} unused"]
    shown = report["skipped"][:8]
    lines += [f"  not copied: {s}" for s in shown]
    if len(report["skipped"]) > len(shown):
        lines.append(f"  ... and {len(report['skipped']) - len(shown)} more (see init_from.json)")
    return "\n".join(lines)


def _parts(model: nn.Module, parts: str) -> list[str]:
    """The comma-separated top-level part names, checked against the model's children."""
    names = [p.strip() for p in parts.split(",") if p.strip()]
    children = [n for n, _ in model.named_children()]
    for name in names:
        if name not in children:
            raise ConfigError(f"the model has no part {name!r}; its parts: "
                              + ", ".join(children))
    return names


def _keep_eval(module: nn.Module, args: Any) -> None:
    module.training = False


def freeze(model: nn.Module, parts: str) -> list[str]:
    """Freeze the comma-separated top-level ``parts`` of ``model``; returns their names.

    Raises:
        ConfigError: a part the model does not have (the message lists the ones it has).
    """
    children = dict(model.named_children())
    names = _parts(model, parts)
    for name in names:
        part = children[name]
        part.requires_grad_(False)
        for module in part.modules():
            module.training = False
            module.register_forward_pre_hook(_keep_eval)
    return names


def trainable(model: nn.Module) -> int:
    """Number of parameters that require a gradient."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
