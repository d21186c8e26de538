"""Which convolutions make an int8 file go wrong in a runtime: quantise a few, compare.

For each ``--only`` pattern, quantises (``rtseg.deploy.quantize.quantize_int8``, as ``rtseg export
--int8``) only the ``Conv`` nodes of ``MODEL.onnx`` whose name contains the pattern, runs the
result in ONNX Runtime and in OpenVINO (as ``rtseg.load`` does), and prints the percentage of
pixels whose class differs from the fp32 file in ONNX Runtime, over ``--images`` training
images of ``--calib`` (drawn with another seed than the ``--calib-images`` that calibrate).
Used to find that OpenVINO breaks the int8 files of
``fpn_r18_gum`` and ``fpn_r18_ifa`` (docs/deploy.md)::

    python -m tools.int8_bisect runs/deploy/fpn_r18_gum_frozen_s0/model.onnx \\
        --calib ../shared/data/camvid --only /backbone/ /lateral.0/ /top_down.2/refine
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", type=Path, help="an fp32 ONNX file written by rtseg export")
    p.add_argument("--calib", required=True, help="a data folder, or 'synthetic'")
    p.add_argument("--only", nargs="+", required=True, metavar="PATTERN",
                   help="quantise only the Conv nodes whose name contains PATTERN (one run each)")
    p.add_argument("--size", nargs=2, type=int, default=[360, 480], metavar=("H", "W"))
    p.add_argument("--calib-images", type=int, default=16)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def changed(run, ref, batches: list[np.ndarray]) -> float:
    """Percentage of pixels whose argmax class differs between ``run`` and ``ref``."""
    import torch

    return 100.0 * float(np.mean([
        (run(x).argmax(1) != ref(x).argmax(1)).float().mean().item()
        for x in map(torch.from_numpy, batches)]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.model.is_file():
        print(f"error: {args.model}: no such file", file=sys.stderr)
        return 2
    import onnx

    from rtseg.deploy.quantize import calibration_batches, quantize_int8
    from rtseg.deploy.runtimes import RUNTIMES, installed

    graph = onnx.load(str(args.model), load_external_data=False).graph
    size = tuple(args.size)
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    ref = RUNTIMES["onnxruntime"](args.model, args.threads)
    batches = list(calibration_batches(args.calib, size, args.images, seed=1))
    runtimes = [r for r in ("onnxruntime", "openvino") if installed(r)]
    for pattern in args.only:
        keep = [c for c in convs if pattern in c]
        with tempfile.TemporaryDirectory() as tmp:
            dst = Path(tmp) / "only.int8.onnx"
            quantize_int8(args.model, dst, calibration_batches(args.calib, size, args.calib_images),
                          op_types=["Conv"], exclude=[c for c in convs if c not in keep])
            pcts = [f"{_NAMES[r]} {changed(RUNTIMES[r](dst, args.threads), ref, batches):.2f} %"
                    for r in runtimes]
        print(f"{pattern}: {len(keep)} Conv quantised; pixels changed vs fp32: "
              + ", ".join(pcts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
