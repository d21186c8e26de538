"""The loss / validation-mIoU plot of a run, from its ``log.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path


def read_log(path: str | Path) -> list[dict]:
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e})") from None
    return rows


def plot_log(log: str | Path, out: str | Path) -> Path:
    """Write a PNG with training loss (left axis) and validation mIoU (right axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log)
    train = [r for r in rows if r.get("kind") == "train"]
    val = [r for r in rows if r.get("kind") == "val"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot([r["iter"] for r in train], [r["loss"] for r in train], color="tab:blue", lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss", color="tab:blue")
    if val:
        ax2 = ax.twinx()
        ax2.plot([r["iter"] for r in val], [100 * r["miou"] for r in val], "o-",
                 color="tab:red")
        ax2.set_ylabel(f"{val[0].get('split', 'val')} mIoU (%)", color="tab:red")
        ax2.set_ylim(0, 100)
    ax.set_title(Path(log).parent.name)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return Path(out)
