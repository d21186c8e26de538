"""BatchNorm folding for inference: each BatchNorm2d merged into the convolution that feeds it.

Which BN follows which conv is found by running the model once (forward hooks plus a
``TorchFunctionMode`` that counts who reads each conv output), so it works on any control flow;
the weight arithmetic is :func:`torch.nn.utils.fusion.fuse_conv_bn_weights`, done in float64.

Used by ``rtseg bench --fold-bn`` (:mod:`rtseg.bench.cases`) to time the inference graph a
deployment runs; moved here from ``rtseg/models/fuse.py`` (models must not import deploy, so
``rtseg.models`` no longer re-exports it).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from ..upsample import IFA


class _UseCounter(TorchFunctionMode):
    """Counts the torch calls that read each watched tensor and return tensors.

    ``watched`` maps ``id(tensor)`` of live tensors (kept alive by the caller, so that an id
    cannot be reused meanwhile) to anything; other tensors are ignored. Metadata queries
    (``x.shape``, ``x.dim()``) return no tensor and are not counted.
    """

    def __init__(self, watched: dict[int, Any]) -> None:
        super().__init__()
        self.watched = watched
        self.uses: Counter[int] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if any(isinstance(o, torch.Tensor) for o in tree_flatten(out)[0]):
            for t in tree_flatten((args, kwargs))[0]:
                if isinstance(t, torch.Tensor) and id(t) in self.watched:
                    self.uses[id(t)] += 1
        return out


def _conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, BN name) pairs where the BN reads the conv's output and nothing else does.

    Found by running ``model`` once on ``example``: a pair qualifies when every call of the BN
    receives a tensor produced by that same ``nn.Conv2d``, every output of that conv goes to
    that BN, and no other torch call reads those outputs (a conv output that also feeds a
    residual branch is never folded). Works on any control flow, which ``torch.fx`` cannot
    trace here (shape-dependent branches).
    """
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, nn.Module] = {}  # id(conv output) → conv
    outputs: dict[nn.Module, list[int]] = {}
    bn_inputs: dict[nn.Module, list[int]] = {}
    keep: list[torch.Tensor] = []  # keeps ids unique during the pass

    def conv_hook(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
        keep.append(out)
        produced[id(out)] = mod
        outputs.setdefault(mod, []).append(id(out))

    def bn_hook(mod: nn.Module, args: tuple) -> None:
        keep.append(args[0])
        bn_inputs.setdefault(mod, []).append(id(args[0]))

    handles = []
    for m in names:
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(bn_hook))
    counter = _UseCounter(produced)
    try:
        # with gradients on, so that the upsamplers take their plain formulas: their inference
        # fast paths read the conv weights without calling the convs (no hooks would fire)
        with torch.enable_grad(), counter:
            model(example)
    finally:
        for h in handles:
            h.remove()
    pairs = []
    for bn, ids in bn_inputs.items():
        convs = {produced.get(i) for i in ids}
        if len(convs) != 1 or None in convs:
            continue
        conv = convs.pop()
        if (set(outputs[conv]) == set(ids) and all(counter.uses[i] == 1 for i in ids)
                and conv.out_channels == bn.num_features and bn.running_mean is not None):
            pairs.append((names[conv], names[bn]))
    return pairs


def _fold_into(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """``conv`` := BN ∘ conv in place (eval statistics, float64 arithmetic)."""
    dtype = conv.weight.dtype

    def f64(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.double()

    w, b = fuse_conv_bn_weights(f64(conv.weight), f64(conv.bias), f64(bn.running_mean),
                                f64(bn.running_var), bn.eps, f64(bn.weight), f64(bn.bias))
    conv.weight = nn.Parameter(w.detach().to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(b.detach().to(dtype), requires_grad=False)


def count_bn(model: nn.Module) -> int:
    """Number of ``nn.BatchNorm2d`` modules in ``model``."""
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@torch.no_grad()
def fold_batchnorm(
    model: nn.Module,
    example: torch.Tensor | None = None,
    check: bool = True,
    tol: float = 1e-4,
) -> nn.Module:
    """A copy of ``model`` (eval mode) with every BatchNorm2d folded into the conv before it.

    For each pair found by running the model once on ``example`` (default: a random 1×3×64×64
    tensor on the model's device), the conv gets ``W' = W·s``, ``b' = (b − μ)·s + β`` with
    ``s = γ/√(σ² + ε)`` (computed in float64) and the BN becomes ``nn.Identity``. A BatchNorm
    that does not directly follow a conv whose output only it reads is left in place
    (:func:`count_bn` on the result tells how many remain).

    Args:
        model: a module taking one B×3×H×W tensor; it is not modified.
        example: input of the discovery pass and of the check.
        check: compare the folded copy with ``model`` on ``example`` and raise RuntimeError
            when the largest difference exceeds ``tol·max(1, max|output|)``.

    Returns:
        The folded copy, in eval mode.
    """
    model = model.eval()
    folded = copy.deepcopy(model)
    if example is None:
        p = next(model.parameters(), None)
        example = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        example = example.to(p.device if p is not None else "cpu")
    pairs = _conv_bn_pairs(folded, example)
    bns = [folded.get_submodule(b) for _, b in pairs]
    for (conv_name, _), bn in zip(pairs, bns, strict=True):
        _fold_into(folded.get_submodule(conv_name), bn)
    # IFA computes its first layer from ``first``'s weight blocks without calling it (the
    # precomputed path), so the discovery pass cannot see that ``rest[0]`` follows it; the
    # layer is linear in those weights, so the BN folds into ``first`` all the same.
    for m in folded.modules():
        if (isinstance(m, IFA) and isinstance(m.rest[0], nn.BatchNorm2d)
                and not any(m.rest[0] is bn for bn in bns)):
            _fold_into(m.first, m.rest[0])
            bns.append(m.rest[0])
    gone = {id(bn) for bn in bns}
    for parent in list(folded.modules()):
        for child_name, child in list(parent.named_children()):
            if id(child) in gone:  # every place the BN is registered
                setattr(parent, child_name, nn.Identity())
    if check:
        ref, out = model(example), folded(example)
        err = (ref - out).abs().max().item()
        if not err <= tol * max(1.0, ref.abs().max().item()):
            raise RuntimeError(f"BN folding changed the output by {err:.3g} (tolerance {tol} "
                               "relative to the output scale); not folding this model")
    return folded.eval()
