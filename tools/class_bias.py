"""Per-class logit offsets fitted on one split, scored on another: a post-hoc prior shift.

A network trained with a pixel loss predicts each class at its training prior; IoU rewards a
different balance of misses and false alarms. Adding an offset ``b_c`` to class c's logits
(here to its log-probabilities, the same argmax) moves that balance without retraining. This
tool predicts ``--fit-split`` and ``--score-split`` once at ``--scales``, fits ``b`` on the
first by coordinate ascent of its mIoU (each class in turn, steps of ±0.25/0.5/1, three sweeps
from ``b = 0``) and prints the per-class IoU of both splits with and without it::

    python -m tools.class_bias runs/camvid_imagenet/fpn_lite0_gum_imagenet/best.pt \
        --data ../shared/data/camvid --scales 2

The offsets are printed, not written into the checkpoint: docs/results.md records why (on
CamVid the val-fitted offsets lift val and lower test).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

import rtseg
from rtseg.data import build_dataset, detect_dataset, eval_transforms
from rtseg.inference.metrics import ConfusionMatrix
from rtseg.inference.tta import TTAOptions, predict_probs
from rtseg.utils import IGNORE_INDEX

STEPS = (-1.0, -0.5, -0.25, 0.25, 0.5, 1.0)


def log_probs(model: torch.nn.Module, data: str, split: str,
              scales: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """N×K×H×W fp16 log-probabilities and N×H×W int64 labels of every image of ``split``."""
    ds = build_dataset(detect_dataset(data), data, split, transform=eval_transforms())
    options = TTAOptions(scales=tuple(scales))
    logp, labels = [], []
    with torch.no_grad():
        for i in range(len(ds)):
            image, label = ds[(i, 0)]
            probs = predict_probs(model, image[None], options, num_classes=ds.num_classes)
            logp.append(probs[0].clamp_min(1e-8).log().half())
            labels.append(label)
    return torch.stack(logp), torch.stack(labels)


def iou_with(logp: torch.Tensor, labels: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """K per-class IoU of ``argmax(logp + bias)`` against ``labels`` (rtseg's
    :class:`ConfusionMatrix`; ``IGNORE_INDEX`` pixels not counted, NaN for an absent class)."""
    k = logp.shape[1]
    cm = ConfusionMatrix(k, IGNORE_INDEX)
    for i in range(0, logp.shape[0], 8):
        cm.update((logp[i:i + 8].float() + bias.view(1, k, 1, 1)).argmax(1), labels[i:i + 8])
    return torch.tensor(cm.compute()["iou"], dtype=torch.float64)


def fit_bias(logp: torch.Tensor, labels: torch.Tensor, sweeps: int = 3) -> torch.Tensor:
    """The K offsets that coordinate ascent of mIoU reaches from zero."""
    bias = torch.zeros(logp.shape[1])
    best = iou_with(logp, labels, bias).nanmean().item()
    for _ in range(sweeps):
        for c in range(bias.numel()):
            for step in STEPS:
                trial = bias.clone()
                trial[c] += step
                score = iou_with(logp, labels, trial).nanmean().item()
                if score > best + 1e-6:
                    best, bias = score, trial
    return bias


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--fit-split", default="val")
    p.add_argument("--score-split", default="test")
    p.add_argument("--scales", nargs="+", type=float, default=[1.0])
    args = p.parse_args(argv)
    seg = rtseg.load(args.checkpoint, device="cpu")
    splits = {s: log_probs(seg.model, args.data, s, args.scales)
              for s in (args.fit_split, args.score_split)}
    bias = fit_bias(*splits[args.fit_split])
    names = seg.classes
    print("offsets: " + ", ".join(f"{n} {b:+.2f}" for n, b in zip(names, bias.tolist(),
                                                                   strict=True)))
    print(f"{'split':<16}{'mIoU':>6} " + " ".join(f"{n[:9]:>9}" for n in names))
    for split, (logp, labels) in splits.items():
        for tag, b in (("", torch.zeros_like(bias)), (" +offsets", bias)):
            iou = 100 * iou_with(logp, labels, b)
            print(f"{split + tag:<16}{iou.nanmean().item():6.2f} "
                  + " ".join(f"{v:9.1f}" for v in iou.tolist()))


if __name__ == "__main__":
    main()
