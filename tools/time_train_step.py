"""A training step (forward, loss, backward, SGD update) in NCHW against NHWC (``channels_last``),
or in fp32 against bf16 autocast (``amp: true``).

Two copies of one model, one per memory format, are stepped in turn on the same random batch
(:func:`rtseg.bench.time_interleaved`); the table gives each one's median and 10th/90th
percentile seconds and the NHWC/NCHW ratio of the medians. It chose ``channels_last: true`` for
the EfficientNet-Lite recipes (configs/camvid/fpn_lite0_*.yaml). Run it on a quiet machine::

    python -m tools.time_train_step --model fpn_lite0_gum --batch 8 --size 320 320 --iters 6

With ``--reference-paths`` the two copies share one layout (NHWC, or NCHW with ``--nchw``) and
one of them steps inside :func:`rtseg.layers.reference_paths`: the upsamplers' training fast
paths (CARAFE's, FADE's and SAPA's phase path) against their plain formulas::

    python -m tools.time_train_step --model fpn_lite0_carafe --batch 2 --size 128 128 \
        --threads 1 --reference-paths

With ``--amp`` both copies are NHWC and one steps under bf16 autocast (the trainer's
``amp: true`` on a CPU)::

    python -m tools.time_train_step --model fpn_lite0_gum --batch 8 --size 320 320 --amp
"""

from __future__ import annotations

import argparse
import contextlib
import copy

import torch

import rtseg
from rtseg.bench import time_interleaved
from rtseg.layers import reference_paths
from rtseg.losses import build_loss
from rtseg.utils import autocast


def step_fn(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
            reference: bool = False, precision: str = "fp32"):
    """One SGD step of ``model`` on (images, labels), main and auxiliary losses summed (each
    auxiliary output's loss of its kind, ``model.aux_kinds``, on float32 logits as the trainer
    computes it); inside :func:`rtseg.layers.reference_paths` if ``reference``; the forward
    pass under :func:`rtseg.utils.autocast` of ``precision``."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    kinds = model.aux_kinds
    loss_fn = build_loss("ce", [1.0] * len(kinds), aux_kinds=kinds)

    def step() -> None:
        with reference_paths() if reference else contextlib.nullcontext():
            _step()

    def _step() -> None:
        with autocast(images.device, precision):
            logits, aux = model(images)
        loss, _ = loss_fn((logits.float(), [a.float() for a in aux]), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fpn_lite0_gum")
    p.add_argument("--classes", type=int, default=11)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, nargs=2, default=[320, 320])
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--threads", type=int)
    p.add_argument("--reference-paths", action="store_true",
                   help="time the fast paths against reference_paths() in one layout")
    p.add_argument("--nchw", action="store_true", help="with --reference-paths: NCHW, not NHWC")
    p.add_argument("--amp", action="store_true", help="NHWC fp32 against NHWC bf16 autocast")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nchw = rtseg.create_model(args.model, args.classes, aux=True).train()
    images = torch.randn(args.batch, 3, *args.size)
    labels = torch.randint(0, args.classes, (args.batch, *args.size))
    if args.amp:
        fp32 = nchw.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
        names = ("fp32", "bf16")
        fns = {"fp32": step_fn(fp32, images, labels),
               "bf16": step_fn(copy.deepcopy(fp32), images, labels, precision="amp")}
    elif args.reference_paths:
        fmt = torch.contiguous_format if args.nchw else torch.channels_last
        images = images.contiguous(memory_format=fmt)
        fast = nchw.to(memory_format=fmt)
        ref = copy.deepcopy(fast)
        names = ("reference", "fast")
        fns = {"reference": step_fn(ref, images, labels, reference=True),
               "fast": step_fn(fast, images, labels)}
    else:
        nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
        names = ("NCHW", "NHWC")
        fns = {"NCHW": step_fn(nchw, images, labels),
               "NHWC": step_fn(nhwc, images.contiguous(memory_format=torch.channels_last),
                               labels)}
    res = time_interleaved(fns, warmup=1, iters=args.iters)
    print(f"{args.model}, batch {args.batch}, {args.size[0]}×{args.size[1]}, "
          f"{torch.get_num_threads()} threads, {args.iters} interleaved steps each")
    what = "precision" if args.amp else "paths" if args.reference_paths else "layout"
    print(f"| {what} | median s | p10 s | p90 s |\n|---|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {r['median_ms'] / 1e3:.3f} | {r['p10_ms'] / 1e3:.3f} | "
              f"{r['p90_ms'] / 1e3:.3f} |")
    print(f"{names[1]} / {names[0]}: "
          f"{res[names[1]]['median_ms'] / res[names[0]]['median_ms']:.3f}")


if __name__ == "__main__":
    main()
