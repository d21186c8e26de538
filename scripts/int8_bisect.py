"""Which convolutions make an int8 file go wrong in a runtime: quantise a few, compare.

For each ``--only`` pattern, quantises (static QDQ, as ``rtseg export --int8``) only the ``Conv``
nodes of ``MODEL.onnx`` whose name contains the pattern, runs the result in ONNX Runtime and in
OpenVINO, and prints the percentage of pixels whose class differs from the fp32 file in ONNX
Runtime, over ``--images`` training images of ``--calib`` (drawn with another seed than the
``--calib-images`` that calibrate). Used to find that OpenVINO breaks the int8 files of
``fpn_r18_gum`` and ``fpn_r18_ifa`` (docs/deploy.md)::

    python scripts/int8_bisect.py runs/deploy/fpn_r18_gum_frozen_s0/model.onnx \\
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


def changed(run, ref, batches: list[np.ndarray]) -> float:
    """Percentage of pixels whose argmax class differs between ``run`` and ``ref``."""
    return 100.0 * float(np.mean([(run(x).argmax(1) != ref(x).argmax(1)).mean()
                                  for x in batches]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.model.is_file():
        print(f"error: {args.model}: no such file", file=sys.stderr)
        return 2
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from rtseg.backends import installed
    from rtseg.quantize import _Reader, calibration_batches

    graph = onnx.load(str(args.model), load_external_data=False).graph
    name, size = graph.input[0].name, tuple(args.size)
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    fp32 = ort.InferenceSession(str(args.model), opts, providers=["CPUExecutionProvider"])
    ref = lambda x: fp32.run(None, {name: x})[0]  # noqa: E731
    batches = list(calibration_batches(args.calib, size, args.images, seed=1))
    for pattern in args.only:
        keep = [c for c in convs if pattern in c]
        with tempfile.TemporaryDirectory() as tmp:
            dst = str(Path(tmp) / "only.int8.onnx")
            quantize_static(str(args.model), dst,
                            _Reader(name, calibration_batches(args.calib, size,
                                                              args.calib_images)),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            op_types_to_quantize=["Conv"],
                            nodes_to_exclude=[c for c in convs if c not in keep])
            q = ort.InferenceSession(dst, opts, providers=["CPUExecutionProvider"])
            pct = changed(lambda x, q=q: q.run(None, {name: x})[0], ref, batches)
            line = (f"{pattern}: {len(keep)} Conv quantised; pixels changed vs fp32: "
                    f"ONNX Runtime {pct:.2f} %")
            if installed("openvino"):
                import openvino as ov

                compiled = ov.Core().compile_model(dst, "CPU", {
                    "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": args.threads})
                pct = changed(lambda x, c=compiled: c({0: x})[0], ref, batches)
                line += f", OpenVINO {pct:.2f} %"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
