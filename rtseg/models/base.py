"""What every rtseg network shares: the train/eval output contract."""

from __future__ import annotations

import torch
from torch import nn

from ..layers import resize

# What a model returns: eval logits, or training (logits, [auxiliary logits]).
ModelOutput = torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]


class SegmentationModel(nn.Module):
    """Base class: subclasses compute logits and auxiliary logits, :meth:`output` finishes.

    Eval: ``forward(x)`` returns B×K×H×W logits at the input size. Training: it returns
    ``(logits, [aux_1, ...])``, every tensor at the input size; the loss lives outside the
    model and weighs the auxiliary outputs by ``aux_weights`` (the official code's weights).
    ``aux_kinds`` names the loss of each auxiliary output (:data:`rtseg.losses.AUX_LOSSES`):
    ``"seg"`` (B×K×H×W logits against the labels, the default for every output) or
    ``"boundary"`` (B×1×H×W boundary logits, PIDNet's); a subclass with other kinds sets it
    as a class attribute, one entry per auxiliary output.
    """

    aux_weights: tuple[float, ...] = ()
    align_corners: bool = False  # the final resize's convention (True: an official-compatible
    # switch of FANet and IFA, whose official code resizes its logits that way)

    @property
    def aux_kinds(self) -> tuple[str, ...]:
        """The loss kind of each auxiliary output: ``"seg"`` for all, unless overridden."""
        return ("seg",) * len(self.aux_weights)

    def output(
        self, x: torch.Tensor, logits: torch.Tensor, aux: list[torch.Tensor] | None = None
    ) -> ModelOutput:
        size = x.shape[-2:]
        logits = resize(logits, size, self.align_corners)
        if not self.training:
            return logits
        return logits, [resize(a, size, self.align_corners) for a in (aux or [])]
