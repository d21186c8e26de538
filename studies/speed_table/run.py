"""One speed table of many networks in every runtime: where rtseg's networks stand against the
real-time networks users would pick instead (CPU, batch 1).

For each ``--sizes`` H×W and each of ``--models`` (the seeds' networks, the ImageNet-backbone
fair heads ``fpn_lite0_*``, the peers, and the rate row ``fpn_r18_bilinear``):

1. the model is built with random weights (``create_model(name, K, aux=False)``, seed 0,
   :func:`studies.common.randomise_weights`); its parameters and GMAC at the size are counted
   as ``rtseg bench`` counts them (:mod:`rtseg.complexity`);
2. for the ONNX variants it is exported with a static shape (:func:`rtseg.deploy.export.
   export_onnx`) and quantised to its int8 QDQ twin (:func:`rtseg.deploy.quantize.quantize_int8`,
   in a child process: :func:`quantise_in_child`; calibrated on ``--calib-images`` built-in
   synthetic scenes at the size), as
   ``tools.time_exports --int8`` does; GUM samples the way each runtime runs faster
   (``rtseg.bench.cases.GRID_SAMPLE_FOR``); the files are kept in ``--out`` and reused;
3. every variant is a call on one random 1×3×H×W input: ``torch`` (eager fp32, the call
   ``rtseg bench`` makes), ``ort_fp32``, ``ort_int8`` (ONNX Runtime), ``openvino_fp32``,
   ``openvino_int8`` (OpenVINO, skipped with the reason printed when it is not installed),
   with ``--threads`` threads; its first warm-up call checks the output shape;
4. all calls of the size, every model × variant, are timed in one interleaved run
   (:func:`rtseg.bench.time_interleaved`: ``--warmup`` untimed calls each, then ``--iters``
   round-robin rounds), so the machine's drift hits every row alike. All of them are held at
   once (an ONNX Runtime session grew by about 0.25 GB at 512×1024, so about 1 GB at
   1024×2048): when the memory left after a model would not hold another one, the size stops
   with one line rather than meet the OOM killer.

Each size's record (median, 10th and 90th percentile ms, GMAC, parameters per row; the
settings, date, CPU and versions) goes into ``--json`` as soon as the size is done. A size
already there with the same settings and every requested model and variant is not redone, so
the study resumes across sessions (a new run of a size replaces its record). Then the report
(:mod:`studies.speed_table.report`: ``ms (× floor)`` per variant, the published figures
beside) is written between ``<!-- speed_table:begin -->`` and ``<!-- speed_table:end -->`` in
``--docs``/benchmarks.md. Never time while another job uses the cores::

    python -m studies.speed_table.run                  # the full table (long), resumable
    python -m studies.speed_table.run --sizes 512x1024 --variants torch ort_fp32 ort_int8
    python -m studies.speed_table.run --report-only    # the docs block from the JSON alone
    python -m studies.speed_table.run --prepare-only   # the files alone (beside other work)
    python -m studies.speed_table.run --sizes 360x480 --redo   # time a recorded size again
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import re
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import rtseg
from rtseg.bench import describe_settings, time_interleaved
from rtseg.bench.cases import GRID_SAMPLE_FOR, Setup, make_run
from rtseg.complexity import count_macs, count_params
from rtseg.deploy.export import export_onnx
from rtseg.deploy.runtimes import RUNTIMES, child_failure, installed, openvino_compiles
from rtseg.errors import UsageError
from rtseg.inference.memory import available_bytes, format_bytes
from rtseg.registry import list_models
from studies.common import (
    ROOT,
    load_records,
    randomise_weights,
    run_study,
    save_records,
    write_marked_block,
)
from studies.speed_table.report import (
    MODELS,
    NAME,
    RATE_MODEL,
    SIZES,
    VARIANTS,
    merge_size,
    report,
    size_key,
    with_floors,
)

SEED = 0
RUNTIME_OF = {"ort_fp32": ("onnxruntime", False), "ort_int8": ("onnxruntime", True),
              "openvino_fp32": ("openvino", False), "openvino_int8": ("openvino", True)}
# settings that change the numbers: a recorded size measured with others is measured again
SAME = ("threads", "warmup", "iters", "calib_images", "num_classes", "chunk")
# A size holds every model's sessions and their buffers at once (about 1 GB an ONNX Runtime
# session at 1024×2048): the run stops itself while this much memory is still left,
# rather than leave the machine's other jobs to the kernel's OOM killer.
RESERVE = 1 << 30


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=SIZES, metavar="HxW")
    p.add_argument("--models", nargs="+", default=MODELS)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--chunk", type=int, default=None, metavar="N",
                   help="time the models N at a time, each group with the rate row in its own "
                        "interleaved run (for sizes where every call of a size does not fit "
                        "in memory at once)")
    p.add_argument("--calib-images", type=int, default=8)
    p.add_argument("--num-classes", type=int, default=19, help="default 19 (Cityscapes)")
    p.add_argument("--out", default="runs/speed_table", help="exported files, reused")
    p.add_argument("--json", default=str(ROOT / "docs" / "results" / "speed_table.json"))
    p.add_argument("--docs", default=str(ROOT / "docs"), help="the folder of benchmarks.md")
    p.add_argument("--report-only", action="store_true", help="time nothing; report the JSON")
    p.add_argument("--redo", action="store_true",
                   help="time every requested size again even when the JSON has it (after the "
                        "files changed: delete the stale ones from --out first)")
    p.add_argument("--prepare-only", action="store_true",
                   help="export, quantise and compile-check every file, time nothing (may run "
                        "beside another job; the timing then reuses the files)")
    return p.parse_args(argv)


def parse_sizes(texts: list[str]) -> list[tuple[int, int]]:
    """``["512x1024", …]`` as (H, W) pairs; UsageError for anything else."""
    sizes = []
    for text in texts:
        m = re.fullmatch(r"(\d+)x(\d+)", text)
        if m is None or 0 in (int(m[1]), int(m[2])):
            raise UsageError(f"--sizes {text!r}: give each size as HxW, e.g. 512x1024")
        sizes.append((int(m[1]), int(m[2])))
    return sizes


def check_args(args: argparse.Namespace) -> None:
    """UsageError for an unknown model or an impossible count; a repeated model is kept once."""
    args.models = list(dict.fromkeys(args.models))
    unknown = [m for m in args.models if m not in list_models()]
    if unknown:
        raise UsageError(f"unknown --models {', '.join(unknown)}; see `rtseg list`")
    if (args.threads < 1 or args.iters < 1 or args.warmup < 0 or args.calib_images < 1
            or (args.chunk is not None and args.chunk < 1)):
        raise UsageError("--threads, --iters, --calib-images and --chunk must be >= 1, "
                         "--warmup >= 0")


def available(variants: list[str]) -> tuple[list[str], list[str]]:
    """The variants that can run here, and why the others cannot (printed and recorded)."""
    missing = [v for v in variants if v in RUNTIME_OF and not installed(RUNTIME_OF[v][0])]
    reasons = sorted({f"{', '.join(v for v in missing if RUNTIME_OF[v][0] == rt)}: {rt} is not "
                      "installed" for rt in {RUNTIME_OF[v][0] for v in missing}})
    for reason in reasons:
        print(f"skipped {reason}", flush=True)
    return [v for v in variants if v not in missing], reasons


def _atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` then rename to ``path``: a stopped export leaves no half file cached."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write(tmp)
    os.replace(tmp, path)
    return path


def exported(model: torch.nn.Module, name: str, size: tuple[int, int], runtime: str, int8: bool,
             args: argparse.Namespace) -> tuple[Path, str | None]:
    """The ONNX file (or its int8 twin) of ``model`` for ``runtime``, made once in ``--out``,
    and why it could not be made (None when it was).

    Models without GUM get one file for both runtimes; GUM's get a gather file for ONNX
    Runtime. The file name holds the size, class count and calibration count, not the model's
    or the quantiser's code: delete ``--out`` (or the stale files) after changing either.
    """
    gathers = any(getattr(m, "can_gather", False) for m in model.modules())
    grid = GRID_SAMPLE_FOR[runtime] if gathers else "op"
    folder = Path(args.out) / f"{size_key(size)}_k{args.num_classes}"
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / f"{name}{'.gather' if grid == 'gather' else ''}.onnx"
    if not fp32.is_file():
        _atomic(fp32, lambda p: export_onnx(model, p, size, dynamic=False, grid_sample=grid))
    if not int8:
        return fp32, None
    q = fp32.with_name(f"{fp32.stem}.int8_c{args.calib_images}.onnx")
    failed = q.with_suffix(".failed")
    if failed.is_file():  # delete it to try again
        return q, failed.read_text().strip()
    why = None if q.is_file() else quantise_in_child(fp32, q, size, args.calib_images)
    if why is not None:
        failed.write_text(why + "\n")
    return q, why


def quantise_in_child(fp32: Path, q: Path, size: tuple[int, int], images: int) -> str | None:
    """Write ``fp32``'s int8 twin ``q`` (:func:`rtseg.deploy.quantize.quantize_int8`, calibrated
    on ``images`` synthetic scenes) in a child process; None when written, else why not.

    The calibrator runs a copy of the network that keeps every tensor for its ranges: at
    1024×2048 ``fpn_lite0_sapa``'s outgrew this machine's 24 GB, and the OOM killer ended the
    whole study with it. A child's death ends only that file's int8 cells.
    """
    code = ("import sys; from rtseg.deploy.quantize import calibration_batches, quantize_int8; "
            "quantize_int8(sys.argv[1], sys.argv[2], calibration_batches('synthetic', "
            "(int(sys.argv[3]), int(sys.argv[4])), int(sys.argv[5])))")
    tmp = q.with_name(f".{q.stem}.tmp{q.suffix}")
    done = subprocess.run([sys.executable, "-c", code, str(fp32), str(tmp), str(size[0]),
                           str(size[1]), str(images)], capture_output=True, text=True)
    if child_failure(done) is None:
        os.replace(tmp, q)
        return None
    tmp.unlink(missing_ok=True)
    if done.returncode == -signal.SIGKILL:
        return "int8 calibration ran out of memory (the process was killed)"
    return f"int8 quantiser failed: {child_failure(done)}"


def random_model(name: str, args: argparse.Namespace) -> torch.nn.Module:
    """Model ``name`` in eval mode with the study's seeded random weights."""
    torch.manual_seed(SEED)
    model = randomise_weights(rtseg.create_model(name, args.num_classes, aux=False).eval())
    if getattr(model, "temporal", False):
        raise UsageError(f"{name} is temporal: time its streaming step with `rtseg bench`")
    return model


def runtime_file(model: torch.nn.Module, name: str, size: tuple[int, int], variant: str,
                 args: argparse.Namespace) -> tuple[Path, str | None]:
    """The file ``variant`` runs (made once in ``--out``), and why it cannot be timed: an int8
    file that could not be made (:func:`quantise_in_child`) or that OpenVINO cannot compile
    (OpenVINO 2026.4 segfaults on some; checked in a child)."""
    runtime, int8 = RUNTIME_OF[variant]
    path, why = exported(model, name, size, runtime, int8, args)
    if why is not None:
        print(f"{size_key(size)} {name} [{variant}]: not timed, {why}", flush=True)
        return path, f"{name} {variant}: {why}"
    if runtime == "openvino" and int8:
        outcome = openvino_compiles(path)
        if outcome != "compiles":
            print(f"{size_key(size)} {name} [{variant}]: not timed, OpenVINO {outcome}",
                  flush=True)
            return path, f"{name} {variant}: OpenVINO {outcome}"
    return path, None


def model_calls(name: str, size: tuple[int, int], variants: list[str], x: torch.Tensor,
                args: argparse.Namespace) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """``{variant: call}`` of model ``name`` on ``x``, and its ``{"gmac", "params"}``."""
    model = random_model(name, args)
    info = {"gmac": count_macs(model, size) / 1e9, "params": count_params(model)}
    setup = Setup(torch.device("cpu"), size)
    calls: dict[str, Callable[[], Any]] = {}
    for v in variants:
        if v == "torch":
            calls[v] = make_run(setup, setup.prepare(model), (x,), argmax=False)
            continue
        path, why = runtime_file(model, name, size, v, args)
        if why is not None:
            info.setdefault("not_timed", []).append(why)
            continue
        calls[v] = functools.partial(RUNTIMES[RUNTIME_OF[v][0]](path, threads=args.threads), x)
    return calls, info


def prepare(size: tuple[int, int], variants: list[str], args: argparse.Namespace) -> None:
    """Every file ``size`` needs (exported, quantised, OpenVINO's compile check run), untimed
    and without opening a runtime."""
    for name in args.models:
        model = random_model(name, args)
        ready = [v for v in variants
                 if v != "torch" and runtime_file(model, name, size, v, args)[1] is None]
        print(f"{size_key(size)} {name}: files ready ({', '.join(ready) or 'none'})", flush=True)


def measure(size: tuple[int, int], variants: list[str], skipped: list[str],
            args: argparse.Namespace) -> dict[str, Any]:
    """The record of one size: every model × variant timed in one interleaved run, or with
    ``--chunk`` N models (and the rate row) at a time, each row marked with its ``chunk``."""
    others = [m for m in args.models if m != RATE_MODEL]
    rate = [RATE_MODEL] if RATE_MODEL in args.models else []
    n = args.chunk or len(others) or 1
    groups = [others[i:i + n] + rate for i in range(0, len(others), n)] or [rate]
    rows, notes = [], []
    for chunk, models in enumerate(groups):
        timed, why = time_models(size, models, variants, args)
        rows += [{**r, "chunk": chunk} for r in with_floors(timed)]
        notes += [n for n in why if n not in notes]
    settings = describe_settings(
        torch.device("cpu"), size=size, batch=1, warmup=args.warmup, iters=args.iters,
        calib_images=args.calib_images, num_classes=args.num_classes, chunk=args.chunk,
        date=datetime.date.today().isoformat(), onnxruntime=_version("onnxruntime"),
        openvino=_version("openvino"), grid_sample=GRID_SAMPLE_FOR)
    return {"size": size_key(size), "models": list(args.models), "variants": variants,
            "skipped": skipped + notes, "settings": settings, "rows": rows}


def time_models(size: tuple[int, int], models: list[str], variants: list[str],
                args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of ``models`` × ``variants`` at ``size``, timed in one interleaved run, and why a
    cell was not timed (an int8 file OpenVINO cannot compile)."""
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(SEED))
    want = (1, args.num_classes, *size)
    calls: dict[tuple[str, str], Callable[[], Any]] = {}
    info: dict[str, dict[str, Any]] = {}
    largest = 0
    for i, name in enumerate(models, 1):
        before = available_bytes()
        mine, info[name] = model_calls(name, size, variants, x, args)
        for v, call in mine.items():
            shape = tuple(call().shape)  # the first warm-up call
            if shape != want:
                raise RuntimeError(f"{name} [{v}]: output {shape}, expected {want}")
            calls[(name, v)] = call
        print(f"{size_key(size)} {name}: ready ({', '.join(mine)})", flush=True)
        left = available_bytes()
        if before is None or left is None or i == len(models):
            continue
        largest = max(largest, before - left)
        if left < 1.5 * largest + RESERVE:
            raise UsageError(
                f"{size_key(size)}: stopped with {format_bytes(left)} of memory left after {i} "
                f"of {len(models)} models (one model took up to {format_bytes(largest)}); "
                "every call of a group is held at once: use --chunk, or time fewer --models or "
                "--variants at this size (the sizes before it are recorded)")
    print(f"{size_key(size)}: timing {len(calls)} calls, {args.iters} interleaved rounds",
          flush=True)
    stats = time_interleaved({f"{m} [{v}]": c for (m, v), c in calls.items()},
                             warmup=max(args.warmup - 1, 0), iters=args.iters)
    notes = [n for m in models for n in info[m].pop("not_timed", [])]
    return [{"model": m, "variant": v, **{k: stats[f"{m} [{v}]"][k]
                                          for k in ("median_ms", "p10_ms", "p90_ms")},
             **info[m]} for m, v in calls], notes


def _version(module: str) -> str | None:
    if not installed(module):
        return None
    return getattr(__import__(module), "__version__", "unknown")


def is_done(record: dict | None, variants: list[str], args: argparse.Namespace) -> bool:
    """Whether ``record`` already answers this call: same settings, every model and variant."""
    if record is None:
        return False
    s = record["settings"]
    return (all(s.get(k) == getattr(args, k) for k in SAME)
            and set(args.models) <= set(record["models"])
            and set(variants) <= set(record["variants"]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = parse_sizes(args.sizes)
    json_path = Path(args.json)
    if not args.report_only:
        check_args(args)
        variants, skipped = available(args.variants)
        if not variants:
            raise UsageError("no requested variant can run here")
        torch.set_num_threads(args.threads)
        for size in sizes:
            if args.prepare_only:
                prepare(size, variants, args)
                continue
            records = load_records(json_path)
            old = next((r for r in records if r["size"] == size_key(size)), None)
            if not args.redo and is_done(old, variants, args):
                print(f"{size_key(size)}: already in {json_path}, not redone", flush=True)
                continue
            save_records(json_path, merge_size(records, measure(size, variants, skipped, args)))
            print(f"{size_key(size)}: recorded in {json_path}", flush=True)
    if args.prepare_only:
        return 0
    text = report(load_records(json_path), [size_key(s) for s in sizes])
    write_marked_block(Path(args.docs) / "benchmarks.md", text, NAME)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_study(main))
