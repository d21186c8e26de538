"""What one :func:`rtseg.export` call wrote and measured, and the lines ``rtseg export`` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .export import Check

TITLES = {"onnx": "ONNX Runtime", "torchscript": "TorchScript", "torch.export": "torch.export"}


@dataclass
class ExportReport:
    """What :func:`export` wrote and measured (``str(report)``: the lines ``rtseg export``
    prints)."""

    model: str  # the model's name, as recorded in the ONNX metadata
    origin: str  # where the weights came from
    size: tuple[int, int]  # the trace (export) size
    batch: int
    dynamic: bool
    opset: int
    grid_sample: str = "op"  # how the ONNX graph samples for GUM: "op" or "gather"
    onnx: Path | None = None
    int8: Path | None = None
    fp16: Path | None = None
    torchscript: Path | None = None
    program: Path | None = None  # the torch.export .pt2 file
    program_ranges: dict[str, str] = field(default_factory=dict)  # axis → "lo..hi"/"static"
    checks: list[Check] = field(default_factory=list)  # empty with check=False
    int8_calib: str | None = None
    int8_quantized: dict[str, Any] | None = None  # quantised / float node counts, images
    int8_agreement: dict[str, Any] | None = None  # int8 vs fp32: pixels_changed, max_logit_diff
    int8_openvino: str | None = None  # a static int8 file in OpenVINO: "compiles" or "fails: …"
    fp16_agreement: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        """Every file written, in order."""
        return [p for p in (self.onnx, self.int8, self.fp16, self.torchscript, self.program)
                if p is not None]

    @property
    def sizes(self) -> dict[Path, int]:
        """Bytes of each file written."""
        return {p: p.stat().st_size for p in self.paths if p.exists()}

    @property
    def max_diff(self) -> float | None:
        """Largest |exported − PyTorch| over every check (None when nothing was checked)."""
        return max((c.max_diff for c in self.checks), default=None)

    @property
    def label_agreement(self) -> float | None:
        """Lowest share of pixels with PyTorch's label over every check (None: unchecked)."""
        return min((c.label_agreement for c in self.checks), default=None)

    def lines(self) -> list[str]:
        """The report as text, one line each."""
        h, w = self.size
        out = [*self.notes, f"{self.model} ({self.origin}); trace input {self.batch}×3×{h}×{w}; "
               + ("dynamic batch/H/W" if self.dynamic else "static shapes")]
        sizes = self.sizes

        def wrote(path: Path, what: str) -> str:
            mb = f"{sizes[path] / 1e6:.1f} MB, " if path in sizes else ""
            return f"wrote {path} ({mb}{what})"

        def checks(fmt: str) -> list[str]:
            return [f"  {TITLES[fmt]} vs PyTorch at {c.size[0]}×{c.size[1]}: max |diff| "
                    f"{c.max_diff:.2e}, labels agree on {100 * c.label_agreement:.2f} % of "
                    "pixels" for c in self.checks if c.format == fmt]

        if self.onnx:
            gathers = "; GridSample as gathers" if self.grid_sample == "gather" else ""
            out += [wrote(self.onnx, f"ONNX opset {self.opset}, TorchScript-based exporter"
                          f"{gathers}; classes, palette and normalisation in its metadata"),
                    *checks("onnx")]
        if self.int8 and self.int8_quantized:
            q = self.int8_quantized
            out.append(wrote(self.int8, f"int8 QDQ, {q['calibration_images']} calibration "
                             f"images from {self.int8_calib}") + "; quantised: "
                       + ", ".join(f"{k} ×{v}" for k, v in sorted(q["quantized"].items())))
            if q["float"]:
                out.append("  still float (no int8 kernel, or only float nodes read it): "
                           + ", ".join(f"{k} ×{v}" for k, v in sorted(q["float"].items())))
        if self.int8 and self.int8_agreement:
            a = self.int8_agreement
            out.append(f"  int8 vs fp32 on {a['images']} images (another sample): "
                       f"{100 * a['pixels_changed']:.2f} % of pixels change class, max |logit "
                       f"diff| {a['max_logit_diff']:.3f}")
        if self.int8 and self.int8_openvino:
            runs = ("backend=auto runs it there" if self.int8_openvino == "compiles"
                    else "backend=auto runs it in ONNX Runtime")
            out.append(f"  OpenVINO (a child process): {self.int8_openvino}; {runs}")
        if self.fp16 and self.fp16_agreement:
            a = self.fp16_agreement
            out.append(wrote(self.fp16, "fp16 weights and arithmetic, fp32 input/output")
                       + f"; vs fp32 on {a['images']} random inputs: "
                       f"{100 * a['pixels_changed']:.2f} % of pixels change class, max |logit "
                       f"diff| {a['max_logit_diff']:.3g}")
        if self.torchscript:
            out += [wrote(self.torchscript, "torch.jit.trace"), *checks("torchscript")]
        if self.program:
            axes = ", ".join(f"{k} {v}" for k, v in self.program_ranges.items())
            out += [wrote(self.program, f"torch.export; input axes {axes}"),
                    *checks("torch.export")]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())
