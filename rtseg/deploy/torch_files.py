"""TorchScript and ``torch.export`` files of a network, each checked against PyTorch with
:func:`rtseg.deploy.export.compare` (the same input, tolerance and report as the ONNX check).

A TorchScript trace is size-generic for the reason the ONNX graph is (see
:mod:`rtseg.deploy.export`). ``torch.export`` instead guards its own assumptions and reports
the valid range of H and W (for FANet H, W ≥ 65 when exported at 512×1024: its stride-64 level
must not be a single pixel); :func:`export_program` returns it and ``rtseg export`` prints it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .export import compare, example_input, quiet_export


def export_torchscript(
    model: nn.Module, path: str | Path, size: tuple[int, int] = (512, 1024), batch: int = 1
) -> Path:
    """``torch.jit.trace`` of ``model`` (eval) on a ``batch``×3×``size`` input, saved to ``path``.

    The trace is size-generic for the same reason the ONNX graph is (see the module doc).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    with quiet_export(), torch.no_grad():
        traced = torch.jit.trace(model, (example_input(size, batch, 0, model),), check_trace=False)
        traced.save(str(path))
    return path


def check_torchscript(model: nn.Module, path: str | Path, size: tuple[int, int],
                      atol: float = 1e-4, batch: int = 1) -> float:
    """Load the TorchScript file and return its largest difference from ``model`` (≤ atol)."""
    return compare("torchscript", model, path, size, atol, batch).max_diff


def export_program(
    model: nn.Module,
    path: str | Path,
    size: tuple[int, int] = (512, 1024),
    dynamic: bool = True,
    batch: int = 1,
) -> tuple[Path, dict[str, str]]:
    """``torch.export`` of ``model`` (eval, non-strict), saved with ``torch.export.save``.

    With ``dynamic`` H and W are ``Dim.AUTO``: symbolic wherever the model allows, with the
    valid range the exporter derived (the batch stays ``batch``: torch.export would make a
    dynamic batch ≥ 2). Returns the path and, per input axis, "static" or "lo..hi".
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    x = example_input(size, batch, 0, model)
    shapes = ({2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO},) if dynamic else None
    with quiet_export():
        ep = torch.export.export(model, (x,), dynamic_shapes=shapes, strict=False)
    torch.export.save(ep, str(path))
    return path, program_ranges(ep)


def program_ranges(ep: Any) -> dict[str, str]:
    """Axis ranges of the image input of an ExportedProgram: {"H": "17..int_oo", ...}."""
    user = list(ep.graph_signature.user_inputs)
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name in user)
    ranges = {}
    for axis, dim in zip("BCHW", node.meta["val"].shape, strict=True):
        if isinstance(dim, torch.SymInt):
            vr = ep.range_constraints.get(dim.node.expr)
            ranges[axis] = f"{vr.lower}..{vr.upper}" if vr is not None else "dynamic"
        else:
            ranges[axis] = "static"
    return ranges


def check_program(model: nn.Module, path: str | Path, size: tuple[int, int],
                  atol: float = 1e-4, batch: int = 1) -> float:
    """Load the ``.pt2`` file and return its largest difference from ``model`` (≤ atol)."""
    return compare("torch.export", model, path, size, atol, batch).max_diff
