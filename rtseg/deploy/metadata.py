"""The exported-file format: what rtseg writes into an ONNX file's metadata, and reads back.

``rtseg.export`` (and ``rtseg export --onnx``) stores in the ONNX file's ``metadata_props``
everything inference needs besides the graph (:data:`METADATA_KEYS`): the model name, class
names, palette, normalisation, the input-size rules and the precision, so ``rtseg.load("m.onnx")``
needs no checkpoint and no rtseg config. Every value is a string, lists as JSON;
:data:`METADATA_FORMAT` is bumped when a reader of an older rtseg could misread a file.

Moved here from ``rtseg/backends.py`` (reading) and ``rtseg/cli/export.py`` (writing).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, first_line

METADATA_FORMAT = 1
METADATA_KEYS = ("rtseg.format", "rtseg.model", "rtseg.classes", "rtseg.palette", "rtseg.mean",
                 "rtseg.std", "rtseg.dynamic", "rtseg.trace_size", "rtseg.version")


def is_exported(path: str | Path) -> bool:
    """True for an exported ``.onnx`` file (run by a runtime), False for a checkpoint."""
    return Path(path).suffix.lower() == ".onnx"


def make_metadata(model_name: str, classes: Sequence[str], palette: Sequence, mean: Sequence,
                  std: Sequence, dynamic: bool, trace_size: tuple[int, int], batch: int = 1,
                  precision: str = "fp32", grid_sample: str = "op") -> dict[str, str]:
    """The ONNX metadata of an rtseg export (every value a string; lists as JSON;
    ``grid_sample``: how the graph samples for GUM, ``"op"`` or ``"gather"``)."""
    from .. import __version__

    return {"rtseg.format": str(METADATA_FORMAT), "rtseg.model": model_name,
            "rtseg.precision": precision,
            "rtseg.classes": json.dumps(list(classes)),
            "rtseg.palette": json.dumps([list(map(int, c)) for c in palette]),
            "rtseg.mean": json.dumps(list(mean)), "rtseg.std": json.dumps(list(std)),
            "rtseg.dynamic": json.dumps(bool(dynamic)),
            "rtseg.trace_size": json.dumps(list(trace_size)), "rtseg.batch": str(batch),
            "rtseg.grid_sample": grid_sample, "rtseg.version": __version__}


def write_metadata(path: str | Path, metadata: dict[str, str]) -> None:
    """Store ``metadata`` in the ONNX file at ``path`` (replacing rtseg's earlier keys)."""
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The rtseg metadata of an ONNX file, decoded; CheckpointError when it has none."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file
        raise CheckpointError(f"{path}: cannot read ONNX file ({type(e).__name__}: "
                              f"{first_line(e)})") from None
    props = {p.key: p.value for p in model.metadata_props}
    missing = [k for k in METADATA_KEYS[:6] if k not in props]
    if missing:
        raise CheckpointError(f"{path}: no rtseg metadata ({', '.join(missing)} missing): "
                              "export the model with `rtseg export CHECKPOINT --onnx FILE` "
                              "(or rtseg.export), which records its classes, palette and "
                              "normalisation")
    if int(props["rtseg.format"]) > METADATA_FORMAT:
        raise CheckpointError(f"{path}: written by a newer rtseg (metadata format "
                              f"{props['rtseg.format']}): upgrade rtseg")
    meta: dict[str, Any] = {"model": props["rtseg.model"],
                            "precision": props.get("rtseg.precision", "fp32"),
                            "grid_sample": props.get("rtseg.grid_sample", "op"),
                            "openvino": props.get("rtseg.openvino")}
    for key in ("classes", "palette", "mean", "std", "dynamic", "trace_size", "batch"):
        if f"rtseg.{key}" in props:
            meta[key] = json.loads(props[f"rtseg.{key}"])
    return meta
