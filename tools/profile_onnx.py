"""Where an ONNX file spends its time in a runtime: milliseconds per call by operator type.

ONNX Runtime: its own profiler (``SessionOptions.enable_profiling``), node events summed by
``args.op_name`` (an int8 QDQ graph's fused kernels show as ``QLinearConv``, ``QLinearAdd``, …,
the float islands as their float operator with ``QuantizeLinear`` / ``DequantizeLinear`` around
them). OpenVINO: the CPU plugin's performance counters (``PERF_COUNT``), summed by node type
(the plugin's fused nodes, e.g. a convolution with its additions, count as one), fp32 precision
as ``rtseg.load`` runs it. Random input of the given size, warm-up calls dropped. Files and
runtimes are profiled one after the other, so compare the shares inside one profile and the
totals as a rough guide::

    python -m tools.profile_onnx runs/deploy/gun/model.onnx runs/deploy/gun/model.int8.onnx \\
        --size 512 1024 --threads 2 --runtime onnxruntime openvino

On a CPU shared with another job (ONNX Runtime only), ``--stat min`` takes each node's
fastest timed call instead of its mean and sums those minima by type: a node that was
preempted in some calls counts at its undisturbed time, so the shares hold up when the means
do not (the total printed is then that sum; the fastest whole call is printed beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--size", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--top", type=int, default=12, help="operator types listed per file")
    p.add_argument("--stat", choices=["mean", "min"], default="mean",
                   help="per node: mean of the timed calls, or fastest call (ONNX Runtime)")
    p.add_argument("--runtime", nargs="+", default=["onnxruntime"],
                   choices=["onnxruntime", "openvino"])
    return p.parse_args(argv)


def profile_openvino(path: Path, size: tuple[int, int], threads: int, warmup: int,
                     iters: int) -> dict[str, float]:
    """Milliseconds per call in each OpenVINO node type of ``path`` (CPU plugin, fp32)."""
    import numpy as np
    import openvino as ov

    from rtseg.deploy.runtimes import kept_signal_stack

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].any_name: [1, 3, *size]})
    with kept_signal_stack():  # as rtseg.load's OpenVINOModel compiles
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                     "INFERENCE_NUM_THREADS": threads,
                                                     "PERF_COUNT": "YES"})
        request = compiled.create_infer_request()
    x = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
    calls = []
    for i in range(warmup + iters):
        t = time.perf_counter()
        request.infer({0: x})
        elapsed = time.perf_counter() - t
        if i >= warmup:
            calls.append((elapsed, [(info.node_type, info.real_time.total_seconds())
                                    for info in request.get_profiling_info()]))
    return openvino_times(calls)


def openvino_times(calls: list[tuple[float, list[tuple[str, float]]]]) -> dict[str, float]:
    """Mean milliseconds per call by node type, and ``"(whole call)"``, from the timed calls:
    each a (wall seconds, [(node type, seconds), ...]) pair."""
    per_op: dict[str, float] = defaultdict(float)
    for elapsed, nodes in calls:
        per_op["(whole call)"] += 1000.0 * elapsed / len(calls)
        for node_type, seconds in nodes:
            per_op[node_type] += 1000.0 * seconds / len(calls)
    return dict(per_op)


def profile(path: Path, size: tuple[int, int], threads: int, warmup: int,
            iters: int, stat: str = "mean") -> dict[str, float]:
    """Milliseconds per call spent in each operator type of ``path`` (calls after the warm-up;
    ``stat``: see :func:`ort_times`)."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        x = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
        for _ in range(warmup + iters):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    return ort_times(events, warmup, iters, stat)


def ort_times(events: list[dict], warmup: int, iters: int,
              stat: str = "mean") -> dict[str, float]:
    """Milliseconds per call by operator type, and ``"(whole call)"``, from ONNX Runtime's
    profile ``events`` of ``warmup + iters`` runs (the warm-up runs' events left out).

    ``stat="mean"``: each type's time summed over the timed calls / ``iters``, the whole call
    its mean. ``stat="min"``: each node's fastest timed call, summed by type; the whole call
    is then the sum of those minima and ``"(fastest call)"`` the fastest whole call."""
    runs = [e for e in events if e.get("name") == "model_run"]
    start = runs[warmup]["ts"] if len(runs) > warmup else 0
    nodes = [e for e in events if e.get("cat") == "Node"
             and e["name"].endswith("_kernel_time") and e["ts"] >= start]
    per_op: dict[str, float] = defaultdict(float)
    if stat == "min":
        fastest: dict[str, tuple[str, float]] = {}
        for e in nodes:
            op, ms = e["args"]["op_name"], e["dur"] / 1000.0
            fastest[e["name"]] = (op, min(ms, fastest.get(e["name"], (op, ms))[1]))
        for op, ms in fastest.values():
            per_op[op] += ms
        per_op["(fastest call)"] = min(e["dur"] for e in runs[warmup:]) / 1000.0
        per_op["(whole call)"] = sum(ms for _, ms in fastest.values())
        return dict(per_op)
    for e in nodes:
        per_op[e["args"]["op_name"]] += e["dur"] / 1000.0 / iters
    per_op["(whole call)"] = sum(e["dur"] for e in runs[warmup:]) / 1000.0 / iters
    return dict(per_op)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for path in args.files:
        if not path.is_file():
            print(f"error: {path}: no such file", file=sys.stderr)
            return 2
    if args.stat == "min" and "openvino" in args.runtime:
        print("error: --stat min reads ONNX Runtime's per-node events; use --runtime "
              "onnxruntime", file=sys.stderr)
        return 2
    for path, runtime in ((p, r) for p in args.files for r in args.runtime):
        size = (args.size[0], args.size[1])
        if runtime == "onnxruntime":
            ops = profile(path, size, args.threads, args.warmup, args.iters, args.stat)
        else:
            ops = profile_openvino(path, size, args.threads, args.warmup, args.iters)
        total = ops.pop("(whole call)")
        fastest = ops.pop("(fastest call)", None)
        how = (f"sum of per-node minima over {args.iters} calls after {args.warmup}; fastest "
               f"whole call {fastest:.1f} ms" if fastest is not None else
               f"{args.iters} calls after {args.warmup}")
        print(f"{path} in {runtime}: {total:.1f} ms per call at {args.size[0]}×{args.size[1]}, "
              f"{args.threads} threads ({how})")
        for op, ms in sorted(ops.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"  {op:<22} {ms:8.1f} ms  {100 * ms / total:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
