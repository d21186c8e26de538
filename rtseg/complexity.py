"""Parameter and multiply-accumulate counts.

MACs are counted with ``torch.utils.flop_counter`` on a batch of one in eval mode: convolutions,
matrix products (``einsum``/``bmm``/``scaled_dot_product_attention``) only; interpolation,
``grid_sample``, softmax, normalisation and BN are not counted — the same rule as the figures
of the seed papers' code in the spec. Products the counter cannot see because they run as
elementwise multiply-adds (the k×k reassembly of CARAFE, FADE and SAPA, SAPA's windowed
similarity: k²·C per output pixel, as the CARAFE paper counts them) are added by the modules
that compute them, through an ``uncounted_macs(inputs, output)`` method.
1 GMAC = 1e9 multiply-adds (papers often say "GFLOPs").
The count is that of each method's plain formula (:func:`rtseg.layers.reference_paths`): the
inference fast paths compute the same function, IFA's with fewer MACs (its position term).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .layers import reference_paths


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_call_macs(
    fn: Callable[..., Any], module: nn.Module | None, shapes: Sequence[Sequence[int]]
) -> int:
    """Multiply-accumulates of ``fn(module, *inputs)``, ``inputs`` zeros of the given shapes.

    The call runs on a copy of ``module`` (eval mode) on the ``meta`` device: only shapes are
    computed, so counting a non-local attention at 1024×2048 needs no memory and little time.
    ``module`` may be None for a bare function of its inputs.
    """
    meta = copy.deepcopy(module).to("meta").eval() if module is not None else None
    inputs = [torch.zeros(*shape, device="meta") for shape in shapes]
    extra = [0]
    hooks = [m.register_forward_hook(
        lambda m, args, out: extra.__setitem__(0, extra[0] + m.uncounted_macs(args, out)))
        for m in (meta.modules() if meta is not None else ()) if hasattr(m, "uncounted_macs")]
    counter = FlopCounterMode(display=False)
    try:
        with counter, reference_paths():
            fn(meta, *inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return counter.get_total_flops() // 2 + extra[0]


def count_macs(model: nn.Module, size: tuple[int, int], batch: int = 1) -> int:
    """Multiply-accumulates of one eval forward pass on a ``batch``×3×H×W input."""
    return count_call_macs(lambda m, x: m(x), model, [(batch, 3, *size)])
