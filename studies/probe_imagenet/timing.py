"""``python -m studies.probe_imagenet.run --time-step``: seconds of a training step of both
protocols and of a test-frame forward pass, per upsampler, and the study's projected hours."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import rtseg
from rtseg.bench import time_interleaved
from studies.probe_imagenet.report import PROTOCOLS
from studies.probe_imagenet.run import EVAL_MINUTES


def _train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                loss: Callable) -> Callable[[], None]:
    """One SGD step of ``model`` (its trainable parameters) on (x, y) with ``loss``."""
    opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=0.01)

    def step() -> None:
        model.train()
        logits, aux = model(x)
        value, _ = loss((logits, list(aux)), y)
        opt.zero_grad()
        value.backward()
        opt.step()

    return step


def time_step(args: argparse.Namespace, size: tuple[int, int] = (320, 320), batch: int = 8,
              steps: int = 2, test_size: tuple[int, int] = (720, 960)) -> dict[str, dict]:
    """Median seconds of a training step of each protocol (interleaved, after a warm-up step;
    the recipe's batch, crop, OHEM, NHWC, fp32) and of one test-frame forward pass, per
    upsampler; then the study's projected hours."""
    from rtseg.losses import build_loss
    from rtseg.training import weights

    nhwc = torch.channels_last
    x = torch.randn(batch, 3, *size).contiguous(memory_format=nhwc)
    y = torch.randint(0, 11, (batch, *size))
    frame = torch.randn(1, 3, *test_size).contiguous(memory_format=nhwc)
    loss = build_loss("ohem", (0.4, 0.4), min_kept=size[0] * size[1] // 16 * batch)
    out: dict[str, dict] = {}
    for up in args.upsamplers:
        nets = {p: rtseg.create_model(f"fpn_lite0_{up}", 11).to(memory_format=nhwc)
                for p in PROTOCOLS}
        weights.freeze(nets["frozen"], "backbone")
        stats = time_interleaved({p: _train_step(m, x, y, loss) for p, m in nets.items()},
                                 warmup=1, iters=steps)
        model = nets["finetune"].eval()
        with torch.no_grad():
            model(frame)
            t = time.perf_counter()
            model(frame)
            forward = time.perf_counter() - t
        out[up] = {**{p: r["median_ms"] / 1e3 for p, r in stats.items()}, "forward": forward}
        r = out[up]
        print(f"{up}: frozen {r['frozen']:.2f} s/step, end-to-end {r['finetune']:.2f} s/step "
              f"({r['frozen'] / r['finetune']:.2f}×), test frame {forward:.2f} s", flush=True)
    seeds = len(args.seeds)
    a = seeds * sum(args.frozen_iters * r["frozen"] / 60 + EVAL_MINUTES for r in out.values())
    fixed = [out[u]["finetune"] for u in args.finetune_upsamplers if u in out]
    rest = [r["finetune"] for u, r in out.items() if u not in args.finetune_upsamplers]
    per = fixed + [statistics.fmean(rest or fixed or [0.0])] * args.finetune_best
    b = seeds * sum(args.finetune_iters * t / 60 + EVAL_MINUTES for t in per)
    print(f"batch {batch}, {size[0]}×{size[1]}, {torch.get_num_threads()} threads, median of "
          f"{steps}; test frame {test_size[0]}×{test_size[1]}. Projected with {EVAL_MINUTES:.0f} "
          f"min a run outside the steps: A {a / 60:.1f} h, B {b / 60:.1f} h, "
          f"{(a + b) / 60:.1f} h in all")
    return out
