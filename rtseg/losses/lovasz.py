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
The ordering is piecewise constant, as in the paper, so the loss is ``Σ_i e_i · w_i`` with
``w_i`` the Δ increment at pixel i's rank: the weights are found without autograd (one top-k over
every class at once, the increments scattered back to the pixels) and the gradient is ``w``
itself, the same as back-propagating through the sort, at a fraction of its cost. Errors at or
below ``tail`` (default 1e-3) get no weight: they come last in the order, so every kept term is
exact, and the dropped terms add at most ``tail`` to a class's loss (Σ of the dropped Δ
increments ≤ 1). A trained network is confident on most pixels, and sorting all B·H·W errors of
every class costs many times the cross-entropy on a CPU. Tied errors may be ordered either way:
the loss is the same.
"""

from __future__ import annotations

import torch


def lovasz_grad(fg_sorted: torch.Tensor, gts: torch.Tensor | int) -> torch.Tensor:
    """Δ_k − Δ_{k−1} along the last dimension: the first m pixels of the errors' sorted order
    (``…×m`` class indicators) of classes with ``gts`` pixels over all N (an int, or ``…×1``)."""
    fg = fg_sorted.to(torch.float32)
    intersection = gts - fg.cumsum(-1)
    union = gts + (1.0 - fg).cumsum(-1)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], -1)


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
    fg = labels == torch.arange(num_classes, device=labels.device).unsqueeze(1)  # K×N
    errors = torch.where(fg, 1.0 - probs, probs)
    gts = fg.sum(1, keepdim=True)  # K×1
    chosen = (gts.squeeze(1) > 0 if classes == "present"
              else torch.ones(num_classes, dtype=torch.bool, device=gts.device))
    if not bool(chosen.any()):
        return logits.sum() * 0.0
    with torch.no_grad():
        kept = (errors > tail).sum(1, keepdim=True)  # K×1: the errors each class sorts
        m = int(kept.max())
        if 4 * m > errors.shape[1]:  # a full sort beats a top-k of most of the row
            order = errors.sort(1, descending=True).indices[:, :m]
        else:
            order = errors.topk(m, dim=1).indices  # K×m, each row in decreasing order
        increments = lovasz_grad(fg.gather(1, order), gts)
        increments[torch.arange(m, device=order.device) >= kept] = 0.0
        weights = torch.zeros_like(errors).scatter_(1, order, increments)
    return (errors * weights).sum(1)[chosen].mean()
