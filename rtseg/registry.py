"""Named model configurations: ``register_model`` adds a builder, ``create_model`` calls it."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``fn(num_classes, pretrained_backbone, aux) -> nn.Module``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_MODELS)


def create_model(
    name: str,
    num_classes: int,
    pretrained_backbone: str | None = None,
    aux: bool = True,
) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes.

    Args:
        name: one of :func:`list_models`.
        num_classes: K, the number of output channels.
        pretrained_backbone: path to a local ImageNet state_dict for the backbone (a torchvision
            ``resnet18-*.pth`` for the torchvision-layout models). Keys and shapes must match.
        aux: build the auxiliary heads used for deep supervision in training.

    Returns:
        A module whose ``forward(x: B×3×H×W)`` gives K-channel logits of size H×W in eval mode,
        and in training mode a tuple ``(logits, [aux_logits, ...])``, all B×K×H×W. The model's
        ``aux_weights`` attribute holds the paper's loss weight of each auxiliary output.
    """
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return _MODELS[name](num_classes=num_classes, pretrained_backbone=pretrained_backbone, aux=aux)
