"""Named model configurations: ``register_model`` adds a builder, ``create_model`` calls it.

A builder is ``fn(num_classes, pretrained_backbone=None, aux=True, *, option=default, ...)``:
its keyword-only arguments are the model's options, documented in its docstring, and
:func:`create_model` forwards ``**kwargs`` to them (an unknown one is named in the error).
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from .errors import ConfigError, UnknownNameError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``fn(num_classes, pretrained_backbone, aux, **options) -> nn.Module``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = fn
        return fn

    return wrap


def list_models(filter: str = "") -> list[str]:
    """Names accepted by :func:`create_model`, sorted; ``filter`` is a shell pattern (``fpn_*``)."""
    return [n for n in sorted(_MODELS) if not filter or fnmatch.fnmatchcase(n, filter)]


def model_options(name: str) -> dict[str, Any]:
    """The options of model ``name`` that :func:`create_model` forwards, with their defaults."""
    params = inspect.signature(_builder(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise UnknownNameError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _MODELS[name]


def create_model(
    name: str,
    num_classes: int,
    pretrained_backbone: str | None = None,
    aux: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """Build model ``name`` for ``num_classes`` classes.

    Args:
        name: one of :func:`list_models`.
        num_classes: K, the number of output channels.
        pretrained_backbone: path to a local ImageNet state_dict for the backbone (a torchvision
            ``resnet18-*.pth`` for the torchvision-layout models). Keys and shapes must match.
        aux: build the auxiliary heads used for deep supervision in training.
        **kwargs: the model's options (:func:`model_options`; e.g. FANet's ``mean``, the FPN's
            ``channels``, ``backbone`` and ``upsampler_kwargs``, GUN's ``guidance``).

    Returns:
        A module whose ``forward(x: B×3×H×W)`` gives K-channel logits of size H×W in eval mode,
        and in training mode a tuple ``(logits, [aux_logits, ...])``, all B×K×H×W. The model's
        ``aux_weights`` attribute holds the official code's loss weight of each auxiliary output.

    Raises:
        UnknownNameError: an unknown model name or option.
        ConfigError: ``num_classes`` < 1.
    """
    builder = _builder(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    options = model_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise UnknownNameError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
            + (", ".join(f"{k}={v!r}" for k, v in options.items()) or "none"))
    return builder(num_classes=num_classes, pretrained_backbone=pretrained_backbone, aux=aux,
                   **kwargs)
