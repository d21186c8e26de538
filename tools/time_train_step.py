"""A training step (forward, loss, backward, SGD update) in NCHW against NHWC (``channels_last``).

Two copies of one model, one per memory format, are stepped in turn on the same random batch
(:func:`rtseg.bench.time_interleaved`); the table gives each one's median and 10th/90th
percentile seconds and the NHWC/NCHW ratio of the medians. It chose ``channels_last: true`` for
the EfficientNet-Lite recipes (configs/camvid/fpn_lite0_*.yaml). Run it on a quiet machine::

    python -m tools.time_train_step --model fpn_lite0_gum --batch 8 --size 320 320 --iters 6
"""

from __future__ import annotations

import argparse
import copy

import torch

import rtseg
from rtseg.bench import time_interleaved


def step_fn(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor):
    """One SGD step of ``model`` on (images, labels), main and auxiliary outputs summed."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        logits, aux = model(images)
        loss = sum(torch.nn.functional.cross_entropy(out, labels) for out in [logits, *aux])
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
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nchw = rtseg.create_model(args.model, args.classes, aux=True).train()
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    images = torch.randn(args.batch, 3, *args.size)
    labels = torch.randint(0, args.classes, (args.batch, *args.size))
    res = time_interleaved({
        "NCHW": step_fn(nchw, images, labels),
        "NHWC": step_fn(nhwc, images.contiguous(memory_format=torch.channels_last), labels),
    }, warmup=1, iters=args.iters)
    print(f"{args.model}, batch {args.batch}, {args.size[0]}×{args.size[1]}, "
          f"{torch.get_num_threads()} threads, {args.iters} interleaved steps each")
    print("| layout | median s | p10 s | p90 s |\n|---|---|---|---|")
    for name, r in res.items():
        print(f"| {name} | {r['median_ms'] / 1e3:.3f} | {r['p10_ms'] / 1e3:.3f} | "
              f"{r['p90_ms'] / 1e3:.3f} |")
    print(f"NHWC / NCHW: {res['NHWC']['median_ms'] / res['NCHW']['median_ms']:.3f}")


if __name__ == "__main__":
    main()
