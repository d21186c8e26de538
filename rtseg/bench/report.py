"""The benchmark's record and report: the settings that change the numbers, and the text table."""

from __future__ import annotations

import contextlib
import platform
import re
from pathlib import Path
from typing import Any

import torch

from ..utils import format_table


def device_name(device: torch.device) -> str:
    """Human-readable name of the device (GPU model, or the CPU model from /proc/cpuinfo)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if m:
            return m.group(1).strip()
    return platform.processor() or platform.machine() or "cpu"


def describe_settings(device: torch.device, **settings: Any) -> dict[str, Any]:
    """Everything that changes the numbers, for the report header and the JSON file."""
    out: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device_name(device),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
    }
    out.update(settings)
    out["size"] = list(out["size"])
    if device.type == "cuda":
        out["cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version()
    else:
        out["tf32"] = out["cudnn_benchmark"] = None
    out["timer"] = ("time.perf_counter per call" + (", torch.cuda.synchronize() after each"
                                                    if device.type == "cuda" else ""))
    return out


def _short(x: float) -> str:
    """Two decimals, or three significant digits below 1 (tiny modules)."""
    return f"{x:.2f}" if x >= 1 or x == 0 else f"{x:.3g}"


def _header(s: dict[str, Any]) -> list[str]:
    """The two settings lines above the table."""
    cuda = s["device_type"] == "cuda"
    compile_mode = f" ({s['compile_mode']})" if s["compile"] and s["compile_mode"] else ""
    shape = "input" if s["kind"] == "models" else f"feature C={s['channels']}"
    return [
        f"torch {s['torch']} | {s['device']} ({s['device_type']}) | threads {s['threads']}"
        + (f" | CUDA {s.get('cuda')} cuDNN {s.get('cudnn')} | tf32 {s['tf32']} | "
           f"cudnn.benchmark {s['cudnn_benchmark']}" if cuda else ""),
        f"precision {s['precision']} | channels-last {s['channels_last']} | compile "
        f"{s['compile']}{compile_mode} | fold-bn {s['fold_bn']} | argmax {s['argmax']} | "
        f"{shape} {s['size'][0]}×{s['size'][1]} | batch {s['batch']} | warm-up {s['warmup']} | "
        f"timed {s['iters']}" + (" | interleaved (--compare)" if s["compare"] else "")
        + (" | reference paths" if s.get("reference_paths") else ""),
    ]


def format_report(result: dict[str, Any]) -> str:
    """Settings, reference and the results table of :func:`rtseg.bench.run_benchmark` as text."""
    s, ref, rows = result["settings"], result["reference"], result["results"]
    lines = _header(s)
    if ref is not None:
        lines.append(f"reference: fp32 matmul {ref['n']}×{ref['n']} @ {ref['n']}×{ref['n']}: "
                     f"{ref['gflops']:.1f} GFLOP/s (median of {ref['repeats']})")
    head = ["model" if s["kind"] == "models" else "module", "params (M)", "GMAC",
            "median ms", "p10 ms", "p90 ms", "FPS", "GFLOP/s", "% matmul", "peak MB", "× fastest"]
    floors = any("floor_ms" in r for r in rows)
    table = [
        [r["name"], _short(r["params_m"]), _short(r["gmac"]), f"{r['median_ms']:.2f}",
         f"{r['p10_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['fps']:.2f}", f"{r['gflops']:.1f}",
         "n/a" if r["efficiency_pct"] is None else f"{r['efficiency_pct']:.1f}",
         "n/a" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}",
         f"{r['relative']:.2f}"]
        + ([_short(r["floor_ms"]), "n/a" if r["over_floor"] is None
            else f"{r['over_floor']:.2f}"] if floors else [])
        for r in rows if r["error"] is None
    ]
    lines.append(format_table(head + (["floor ms", "× floor"] if floors else []), table))
    lines += [f"{r['name']}: not timed: {r['error']}" for r in rows if r["error"] is not None]
    if s["fold_bn"] and s["kind"] == "models":
        left = {r["name"]: r["bn_left"] for r in rows if r.get("bn_left")}
        lines.append("BN folded in every model" + (f" except: {left}" if left else ""))
    lines.append("GMAC per sample (conv + matmul/attention products); GFLOP/s = 2·GMAC·batch / "
                 "median; peak MB = weights + input + the largest extra during one call ("
                 + ("torch.cuda.max_memory_allocated" if s["device_type"] == "cuda"
                    else "peak-RSS rise, approximate") + ")."
                 + (" floor = the latency of the row's MACs (a module: the bilinear module's "
                    "latency plus its extra MACs) at the GFLOP/s fpn_r18_bilinear reached in "
                    "this run." if floors else ""))
    return "\n".join(lines)
