"""Lovász-softmax: a surrogate of the Jaccard loss (1 − IoU) that a network can descend.

Berman, Rannen Triki and Blaschko, "The Lovász-Softmax loss: A tractable surrogate for the
optimization of the intersection-over-union measure in neural networks", CVPR 2018.

For class c over the N counted (non-ignored) pixels of the batch, with p_i(c) the softmax
probability and fg_i = [y_i = c], the pixel errors are ``e_i = |fg_i − p_i(c)|``. Sort them in
decreasing order (π). The Jaccard loss of mispredicting the first k sorted pixels is

    Δ_k = 1 − I_k / U_k,   I_k = G − Σ_{j≤k} fg_π(j),   U_k = G + Σ_{j≤k} (1 − fg_π(j)),

with G = Σ fg (the class's pixels), and the Lovász extension of Δ at e is
``Σ_k e_π(k) · (Δ_k − Δ_{k−1})``, Δ_0 = 0. It is piecewise linear in e and equals the true
Jaccard loss of the hard prediction when every e_i is 0 or 1 (one-hot probabilities). The loss
is the mean of the per-class values over the classes chosen by ``classes``: ``"present"``
(those with a pixel in the batch's labels; the paper's default for training) or ``"all"``.

Choices the paper leaves to the implementation, as rtseg makes them: pixels are pooled over the
batch (the official code's default, ``per_image=False``), not averaged per image; an all-ignored
batch, or ``"present"`` with no present class, gives a zero that still carries the graph.
Gradients flow through the sorted values ``e_π(k)``; the ordering is piecewise constant, as in
the paper. Errors at or below ``tail`` (default 1e-3) are left out of the sort: they come last
in the order, so every kept term is exact, and the dropped terms add at most ``tail`` to a class's
loss (Σ of the dropped Δ increments ≤ 1). A trained network is confident on most pixels, and
sorting all B·H·W errors of every class costs many times the cross-entropy on a CPU.
"""

from __future__ import annotations

import torch


def lovasz_grad(fg_sorted: torch.Tensor, gts: torch.Tensor | int) -> torch.Tensor:
    """Δ_k − Δ_{k−1} for the first m of the errors' sorted order, given the class indicator of
    those m pixels and the class's pixel count G over all N."""
    fg = fg_sorted.to(torch.float32)
    intersection = gts - fg.cumsum(0)
    union = gts + (1.0 - fg).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_softmax(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255,
                   classes: str = "present", tail: float = 1e-3) -> torch.Tensor:
    """Mean Lovász-softmax loss of ``logits`` (B×K×H×W) against ``target`` (B×H×W int64).

    Args:
        logits: raw scores; the softmax is taken over K in float32.
        target: class indices in ``[0, K)`` or ``ignore_index``.
        ignore_index: pixels excluded from every class's sort.
        classes: ``"present"`` or ``"all"`` (see the module docstring).
        tail: errors at or below it are not sorted (0: every error is).

    Returns:
        A scalar in [0, 1].
    """
    if classes not in ("present", "all"):
        raise ValueError(f"classes must be 'present' or 'all', got {classes!r}")
    if logits.dim() != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"expected logits B×K×H×W and target B×H×W of the same B, H, W, got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    num_classes = logits.shape[1]
    probs = logits.float().softmax(1).transpose(0, 1).reshape(num_classes, -1)  # K×(B·H·W)
    labels = target.reshape(-1)
    valid = labels != ignore_index
    probs, labels = probs[:, valid], labels[valid]
    losses = []
    for c in range(num_classes):
        fg = labels == c
        gts = int(fg.sum())
        if classes == "present" and gts == 0:
            continue
        errors = torch.where(fg, 1.0 - probs[c], probs[c])
        keep = errors > tail
        errors, order = errors[keep].sort(descending=True)
        losses.append((errors * lovasz_grad(fg[keep][order], gts)).sum())
    if not losses:
        return logits.sum() * 0.0
    return torch.stack(losses).mean()
