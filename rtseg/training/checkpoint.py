"""Checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is a dict of tensors and plain Python values: ``format`` (this file layout's
version), ``model`` (state_dict), ``config`` (the training fields), ``num_classes``,
``classes``, ``palette``, and for resuming the optimiser, scheduler, scaler and RNG states.
``torch.load(weights_only=True)`` refuses any pickled object other than those, so a file that
would run code when unpickled is refused before anything in it runs.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, InputNotFoundError, first_line
from ..outputs import atomic_path

CHECKPOINT_FORMAT = 1  # bumped when the layout changes; files without the field are format 1


def save_atomic(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``
    (:func:`rtseg.outputs.atomic_path`; the file gets the umask's mode, like every output).

    A crash at any moment leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    try:
        with atomic_path(path, keep_suffix=False) as tmp, open(tmp, "wb") as f:
            torch.save(obj, f)
    except (OSError, RuntimeError) as err:  # a full disk, a file-size limit, a lost mount
        raise CheckpointError(f"{path}: cannot write checkpoint ({first_line(err)}); the previous "
                              f"{path.name}, if any, is unchanged") from err


def resolve_checkpoint(path: str | Path) -> Path:
    """``path``, or for a run folder its ``best.pt`` (else ``last.pt``)."""
    path = Path(path)
    if not path.is_dir():
        return path
    for name in ("best.pt", "last.pt"):
        if (path / name).is_file():
            return path / name
    raise InputNotFoundError(f"{path}: a folder without best.pt or last.pt (give a checkpoint "
                             "file or a run folder)")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic` (tensors and plain Python only);
    a run folder stands for its ``best.pt`` (else ``last.pt``)."""
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        raise CheckpointError(
            f"{path}: cannot read checkpoint: it holds a pickled object"
            + (f" ({found.group(1)})" if found else "") + " that only running code could "
            "rebuild, and was refused unread (rtseg checkpoints hold tensors and plain values)"
        ) from None
    except Exception as e:  # noqa: BLE001 - truncated or foreign files
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: "
                              f"{first_line(e)})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path}: not an rtseg checkpoint (needs 'model' and 'config')")
    if not isinstance(ckpt["config"], dict) or "model" not in ckpt["config"] \
            or not isinstance(ckpt.get("num_classes"), int):
        raise CheckpointError(f"{path}: not an rtseg checkpoint (needs config.model and "
                              "num_classes)")
    if "classes" not in ckpt or "palette" not in ckpt:  # hand-made files: generic names
        from ..data.folder import default_palette

        ckpt.setdefault("classes", [f"class_{k}" for k in range(ckpt["num_classes"])])
        ckpt.setdefault("palette", default_palette(ckpt["num_classes"]))
    fmt = ckpt.get("format", 1)
    if not isinstance(fmt, int) or fmt > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: written by a newer rtseg (checkpoint format {fmt!r}; "
                              f"this rtseg reads format {CHECKPOINT_FORMAT}): upgrade rtseg")
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The model of an rtseg checkpoint, in eval mode on ``device``, and the checkpoint dict."""
    from ..registry import create_model

    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    model = create_model(cfg["model"], ckpt["num_classes"], aux=True,
                         **(cfg.get("model_kwargs") or {}))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {cfg['model']!r} "
                              f"({first_line(e)})") from None
    return model.to(device).eval(), ckpt


def rng_state() -> dict[str, Any]:
    """RNG states of torch, numpy and Python, as tensors and plain numbers (weights_only-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
