"""The speed table's record and its markdown, from the JSON alone.

* :func:`merge_size`: ``docs/results/speed_table.json`` is a list with one record per input size
  (``{"size": "512x1024", "models", "variants", "settings", "rows"}``); a new record replaces
  the one of its size.
* :func:`with_floors`: each row's floor, within its size and variant, from the rate row
  ``fpn_r18_bilinear`` (:func:`rtseg.bench.timing.add_floors`).
* :func:`report`: per size, one table (models × variants, ``ms (× floor)``, the published
  figure beside) and the fastest model of each variant; sizes not measured yet say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rtseg.bench.cases import RATE_MODEL
from rtseg.bench.timing import add_floors
from studies.probe_imagenet.report import wrap

NAME = "speed_table"  # the docs markers: <!-- speed_table:begin --> … <!-- speed_table:end -->
TITLE = "## The seeds' networks against the real-time peers (CPU, every runtime)"
COMMAND = "python -m studies.speed_table.run"
SEEDS = ["gain_r18", "gain_df2", "fanet18", "gun", "ifa_r18"]
FAIR = [f"fpn_lite0_{up}" for up in ("bilinear", "gum", "dysample", "gai", "fast_attention",
                                     "ifa", "carafe", "fade", "sapa")]
PEERS = ["pidnet_s", "ddrnet23_slim", "bisenetv2", "stdc1_seg"]
MODELS = [*SEEDS, *FAIR, *PEERS, RATE_MODEL]
SIZES = ["360x480", "512x1024", "1024x2048"]
VARIANTS = {"torch": "PyTorch fp32", "ort_fp32": "ORT fp32", "ort_int8": "ORT int8",
            "openvino_fp32": "OpenVINO fp32", "openvino_int8": "OpenVINO int8"}
# What each paper published, on its own GPU and protocol (docs/benchmarks.md, "Next to the
# papers"): quoted beside the table, never compared with it.
PUBLISHED: dict[str, dict[str, Any]] = {
    "gain_r18": {"fps": 22.3, "hardware": "GTX 1080Ti", "input": "1024×2048",
                 "source": "GAIN paper (BN kept, fp32, batch 1)"},
    "fanet18": {"fps": 72, "hardware": "Titan X", "input": "1024×2048",
                "source": "FANet paper (no BN, no final upsample)"},
    "gun": {"fps": 33.3, "hardware": "Titan Xp", "input": "512×1024",
            "source": "GUN paper (timing protocol not stated)"},
    "pidnet_s": {"fps": 93.2, "hardware": "RTX 3090, PyTorch", "input": "1024×2048",
                 "source": "PIDNet paper and README"},
    "ddrnet23_slim": {"fps": 101.6, "hardware": "RTX 2080Ti", "input": "1024×2048",
                      "source": "DDRNet paper"},
    "stdc1_seg": {"fps": 250.4, "hardware": "GTX 1080Ti, TensorRT", "input": "512×1024",
                  "source": "STDC paper (STDC1-Seg50)"},
    "bisenetv2": {"fps": 156, "hardware": "GTX 1080Ti", "input": "512×1024",
                  "source": "BiSeNetV2 paper (2048×1024 images run at 512×1024)"},
}


def size_key(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _pixels(key: str) -> int:
    h, _, w = key.partition("x")
    return int(h) * int(w)


def model_order(name: str) -> tuple[int, int, str]:
    """Seeds, the fair heads, the peers, any other model, the rate row last."""
    for group, names in enumerate((SEEDS, FAIR, PEERS)):
        if name in names:
            return group, names.index(name), name
    return (4, 0, name) if name == RATE_MODEL else (3, 0, name)


def merge_size(records: Sequence[dict], record: dict) -> list[dict]:
    """``records`` with ``record`` replacing the one of its size, sorted by pixel count."""
    kept = {r["size"]: r for r in records}
    kept[record["size"]] = record
    return sorted(kept.values(), key=lambda r: _pixels(r["size"]))


def with_floors(rows: Sequence[dict], rate: str = RATE_MODEL) -> list[dict]:
    """``rows`` (one size) with ``floor_ms`` and ``over_floor`` = median / floor added.

    Within each variant, the floor of a row is its GMAC × the rate row's ms per GMAC, which is
    :func:`rtseg.bench.timing.add_floors` of that variant's rows at batch 1 (its rows carry
    ``name``, ``error`` and achieved ``gflops``; those are made here and not kept). A variant
    without a timed rate row gets None.
    """
    out = [{**r, "floor_ms": None, "over_floor": None} for r in rows]
    for variant in dict.fromkeys(r["variant"] for r in out):
        mine = [r for r in out if r["variant"] == variant and r.get("median_ms")]
        bench = [{"name": r["model"], "error": None, "gmac": r["gmac"],
                  "median_ms": r["median_ms"], "gflops": 2 * r["gmac"] / (r["median_ms"] / 1e3)}
                 for r in mine]
        add_floors(bench, rate, None, batch=1)
        for r, b in zip(mine, bench, strict=True):
            r["floor_ms"], r["over_floor"] = b.get("floor_ms"), b.get("over_floor")
    return out


def _ms(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def published(model: str) -> str:
    p = PUBLISHED.get(model)
    return "–" if p is None else f"{p['fps']:g} FPS, {p['hardware']}, {p['input']}"


def settings_line(s: dict[str, Any]) -> str:
    ov = (s.get("openvino") or "").split("-")[0]  # 2026.4.1-22982-…-releases/… → 2026.4.1
    threads = f"{s['threads']} thread{'s' * (s['threads'] != 1)}"
    return (f"{s['device']}, {threads}, batch 1, warm-up {s['warmup']}, "
            f"{s['iters']} interleaved calls each, {s['num_classes']} classes, int8 calibrated "
            f"on {s['calib_images']} synthetic scenes"
            + (f"; models timed {s['chunk']} at a time, each group with {RATE_MODEL} in its "
               "own interleaved run (its row here: the first group's)" if s.get("chunk") else "")
            + f"; {s['date']}; torch {s['torch']}, "
            f"onnxruntime {s['onnxruntime']}" + (f", openvino {ov}" if ov else ""))


def size_section(key: str, record: dict | None) -> list[str]:
    """The markdown of one size: settings, the table, the fastest model of each variant."""
    h, _, w = key.partition("x")
    lines = [f"### {h}×{w}", ""]
    if record is None:
        return lines + [f"Not measured yet: `{COMMAND} --sizes {key}`.", ""]
    rows = [r for r in record["rows"] if r["model"] != RATE_MODEL or not r.get("chunk")]
    variants = [v for v in VARIANTS if v in record["variants"]]
    cell = {(r["model"], r["variant"]): r for r in rows}
    lines += [wrap(f"Settings: {settings_line(record['settings'])}."), ""]
    for reason in record.get("skipped", []):
        lines += [wrap(f"Not timed: {reason}."), ""]
    lines += ["| model | params (M) | GMAC | " + " | ".join(
              f"{VARIANTS[v]} ms (× floor)" for v in variants) + " | published |",
              "|---|---|---|" + "---|" * len(variants) + "---|"]
    for model in sorted(dict.fromkeys(r["model"] for r in rows), key=model_order):
        first = next(r for r in rows if r["model"] == model)
        cells = []
        for v in variants:
            r = cell.get((model, v))
            if r is None:
                cells.append("–")
                continue
            ratio = "" if r["over_floor"] is None else f" ({r['over_floor']:.2f})"
            cells.append(_ms(r["median_ms"]) + ratio)
        lines.append(f"| {model} | {first['params'] / 1e6:.2f} | {first['gmac']:.2f} | "
                     + " | ".join(cells) + f" | {published(model)} |")
    fastest = []
    for v in variants:
        timed = [r for r in rows if r["variant"] == v]
        if timed:
            best = min(timed, key=lambda r: r["median_ms"])
            fastest.append(f"{VARIANTS[v]} {best['model']} ({_ms(best['median_ms'])} ms)")
    return lines + ["", wrap(f"Fastest at {h}×{w}: " + "; ".join(fastest) + "."), ""]


def report(records: Sequence[dict], sizes: Sequence[str]) -> str:
    """The generated section: heading, protocol, command, one section per size (``sizes``
    first, in their order, then any other recorded size), the published figures' sources."""
    by_size = {r["size"]: r for r in records}
    order = list(dict.fromkeys([*sizes, *sorted(by_size, key=_pixels)]))
    lines = [TITLE, "", wrap(
        f"*Generated by `{COMMAND} --report-only` from `docs/results/speed_table.json`; "
        "edits inside this block are overwritten.*"), "", wrap(
        "Every model built as `create_model(name, classes, aux=False)` in eval mode with "
        "random weights (seed 0, BatchNorm statistics and zero-initialised parameters "
        "randomised by `studies.common.randomise_weights`), batch 1, a random input, fp32 "
        "unless int8. PyTorch: eager, `torch.inference_mode()`, the upsamplers' inference fast "
        "paths, as `rtseg bench` calls a model. ORT (ONNX Runtime) and OpenVINO: the same "
        "weights exported by `rtseg.deploy.export.export_onnx` (static shape); int8 is its "
        "QDQ twin (`rtseg.deploy.quantize.quantize_int8`), which OpenVINO runs too. GUM samples as "
        "four gathers in the ONNX Runtime files and as `GridSample` in the OpenVINO ones "
        "(`rtseg.bench.cases.GRID_SAMPLE_FOR`). All calls of one size (every model and "
        "variant) are timed in one interleaved run (`rtseg.bench.time_interleaved`, round "
        "robin), so the machine's drift hits every row alike; ms is the median call. "
        "× floor = median / floor, the floor being the row's GMAC at the ms per GMAC that "
        f"`{RATE_MODEL}` (the rate row) took in the same size and variant: how far a network "
        "is from running its arithmetic as fast as a plain ResNet-18 FPN does. GMAC counts "
        "convolutions and matrix products of the plain formulas (`rtseg.complexity`)."), "",
        "```bash", f"{COMMAND}   # every size missing from the JSON: long, on a quiet CPU only",
        f"{COMMAND} --report-only   # this block from the JSON alone", "```", ""]
    for key in order:
        lines += size_section(key, by_size.get(key))
    sources = "; ".join(f"{m}: {p['source']}" for m, p in PUBLISHED.items())
    lines += [wrap("Published: frames per second as each paper reports it, on its own GPU and "
                   "protocol (see \"Next to the papers\" above); not comparable with "
                   "these CPU figures. Sources: " + sources + "; the others published none "
                   "(–).")]
    return "\n".join(lines).rstrip() + "\n"
