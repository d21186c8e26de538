"""Time the scale+crop augmentation: the two-step RandomScale + RandomCrop (the whole image
resized) against the fused RandomScaleCrop (only the crop window resized).

Synthetic uint8 images on one thread (a data-loader worker's setting): Cityscapes 1024×2048
with a 1024×1024 crop and CamVid 360×480 with a 240×320 crop, scales U[0.5, 2] (GAIN's recipe).
The two are interleaved sample by sample (which goes first alternates) with the same generator
seed per sample, so both see the same scales and windows; the medians of the per-sample times
and the median of the per-sample ratios are printed, with the largest image difference (uint8
levels) and whether all labels agreed. Run::

    python -m studies.time_augment.run --samples 40
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

from rtseg.data.transforms import RandomCrop, RandomScale, RandomScaleCrop
from studies.common import run_study

Pair = tuple[torch.Tensor, torch.Tensor]
SETTINGS = {  # name: (image H×W, crop H×W)
    "cityscapes": ((1024, 2048), (1024, 1024)),
    "camvid": ((360, 480), (240, 320)),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samples", type=int, default=40, help="samples per pipeline and setting")
    p.add_argument("--scale", type=float, nargs=2, default=(0.5, 2.0), metavar=("MIN", "MAX"))
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--only", choices=sorted(SETTINGS), help="time one setting only")
    return p.parse_args(argv)


def _timed(fn: Callable[[], Pair]) -> tuple[float, Pair]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1e3, out


def time_setting(name: str, samples: int, scale: tuple[float, float]) -> None:
    (h, w), crop = SETTINGS[name]
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    label = torch.randint(0, 19, (h, w), generator=g)
    rescale, recrop = RandomScale(*scale), RandomCrop(crop)
    fused = RandomScaleCrop(crop, *scale)

    def old(seed: int) -> Pair:
        gen = torch.Generator().manual_seed(seed)
        return recrop(*rescale(image, label, gen), gen)

    def new(seed: int) -> Pair:
        return fused(image, label, torch.Generator().manual_seed(seed))

    old(0), new(0)  # warm-up (allocator, first-call dispatch)
    t_old, t_new, worst, labels_equal = [], [], 0, True
    for seed in range(samples):
        if seed % 2 == 0:
            a, out_old = _timed(lambda s=seed: old(s))
            b, out_new = _timed(lambda s=seed: new(s))
        else:
            b, out_new = _timed(lambda s=seed: new(s))
            a, out_old = _timed(lambda s=seed: old(s))
        t_old.append(a)
        t_new.append(b)
        worst = max(worst, int((out_old[0].int() - out_new[0].int()).abs().max()))
        labels_equal &= torch.equal(out_old[1], out_new[1])
    ratios = [a / b for a, b in zip(t_old, t_new, strict=True)]
    print(
        f"{name:10s} {h}x{w} crop {crop[0]}x{crop[1]}: "
        f"old {statistics.median(t_old):7.1f} ms  new {statistics.median(t_new):6.1f} ms  "
        f"ratio of medians {statistics.median(t_old) / statistics.median(t_new):5.2f}  "
        f"median ratio {statistics.median(ratios):5.2f}  "
        f"(max image diff {worst}, labels equal: {labels_equal})"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{args.samples} samples each, scale U[{args.scale[0]}, {args.scale[1]}]"
    )
    for name in [args.only] if args.only else list(SETTINGS):
        time_setting(name, args.samples, tuple(args.scale))


if __name__ == "__main__":
    sys.exit(run_study(main))
