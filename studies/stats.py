"""Statistics of runs paired by seed, and their markdown.

* :func:`spread`, :func:`by_seed`, :func:`paired_cell`, :func:`difference_table`,
  :func:`per_class_table`: the markdown of results over seeds, and of a difference to a
  baseline over the seeds both have (same-seed runs share initial weights, data order and
  augmentation, so the difference is taken seed by seed).
* :func:`paired_difference`, :func:`verdict_words`: the mean difference over paired seeds
  with its Student-t interval, and the words a report may use for it (:func:`t_quantile`
  without scipy).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

Runs = list[dict[str, Any]]  # one metrics dict per seed


def spread(values: Sequence[float]) -> str:
    """``mean`` in %, with ``(min–max)`` over seeds when there are several."""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ({100 * min(values):.1f}–{100 * max(values):.1f})"


def _pairs(runs: Runs, baseline: Runs, key: str) -> list[tuple[Any, float, float]]:
    """``(seed, run's value, baseline's value)`` for every seed both have, in ``runs``' order."""
    seeds = [r.get("seed") for r in runs]
    base_seeds = [r.get("seed") for r in baseline]
    for side, ss in (("runs", seeds), ("baseline", base_seeds)):
        if len(set(ss)) != len(ss):
            raise ValueError(f"the {side} repeat a seed: {ss}")
    base = {r.get("seed"): r[key] for r in baseline}
    return [(r.get("seed"), r[key], base[r.get("seed")]) for r in runs if r.get("seed") in base]


def by_seed(runs: Runs, baseline: Runs, key: str) -> str:
    """The difference to the baseline seed by seed (same initial weights and data order)."""
    return ", ".join(f"s{seed} {100 * (a - b):+.1f}" for seed, a, b in _pairs(runs, baseline, key))


def paired_cell(runs: Runs, baseline: Runs, key: str, confidence: float = 0.95) -> str:
    """The mean same-seed difference to the baseline in points, its Student-t interval and its
    word: ``"+2.0 (+0.5 to +3.5) ahead"``.

    Only the seeds both sides have are paired (:func:`paired_difference`); the word is
    :func:`verdict_words` of the unrounded interval with no margin, since none was fixed
    before these runs: "ahead" or "behind" when the interval excludes 0, else "not shown",
    never "level". One paired seed gives the difference and no interval or word; none, a note.
    """
    pairs = _pairs(runs, baseline, key)
    if not pairs:
        return "no paired seeds"
    res = paired_difference([a for _, a, _ in pairs], [b for _, _, b in pairs], confidence)
    if res.n == 1:
        return f"{100 * res.mean:+.1f} (1 paired seed: no interval)"
    low, high = res.interval
    return (f"{100 * res.mean:+.1f} ({100 * low:+.1f} to {100 * high:+.1f}) "
            f"{verdict_words(res.interval)}")


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularised incomplete beta function, for 0 <= x <= 1 and a, b > 0.

    The continued fraction of DLMF 8.17.22, evaluated by the modified Lentz method; it
    converges fast for x < (a + 1) / (a + b + 2), and I_x(a, b) = 1 - I_{1-x}(b, a) covers the
    rest.
    """
    if not (0 <= x <= 1) or a <= 0 or b <= 0:
        raise ValueError(f"regularized_beta needs 0 <= x <= 1 and a, b > 0, got {x}, {a}, {b}")
    if x in (0, 1):
        return float(x)
    if x > (a + 1) / (a + b + 2):
        return 1 - regularized_beta(1 - x, b, a)
    tiny, eps = 1e-300, 1e-15
    front = math.exp(a * math.log(x) + b * math.log1p(-x)
                     + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)) / a
    # 1 + d1/(1 + d2/(1 + ...)): d_{2m+1} = -(a+m)(a+b+m)x / ((a+2m)(a+2m+1)),
    # d_{2m} = m(b-m)x / ((a+2m-1)(a+2m)).
    value, c, d = 1.0, 1.0, 0.0
    for j in range(1, 10_000):
        m = j // 2
        if j % 2:
            step = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            step = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1 + step * d
        d = 1 / (d if abs(d) > tiny else tiny)
        c = 1 + step / c
        c = c if abs(c) > tiny else tiny
        value *= c * d
        if abs(c * d - 1) < eps:
            break
    return front / value


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * regularized_beta(df / (df + t * t), df / 2, 0.5)  # P(T > |t|)
    return 1 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (Student's t, ``df`` > 0 degrees of freedom), by bisection."""
    if not 0 < p < 1 or not df > 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p <= 0.5:
        return 0.0 if p == 0.5 else -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, 2 * high
    for _ in range(200):
        mid = (low + high) / 2
        if mid in (low, high):
            break
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


class PairedDifference(NamedTuple):
    """Mean of a - b over paired seeds, its two-sided Student-t interval, and n."""

    mean: float
    interval: tuple[float, float]
    n: int


def paired_difference(a: Sequence[float] | Mapping[Any, float],
                      b: Sequence[float] | Mapping[Any, float],
                      confidence: float = 0.95) -> PairedDifference:
    """The mean of the seed-by-seed differences a - b with its Student-t interval.

    ``a`` and ``b`` hold one value per seed: two mappings from seed to value (paired by
    seed; the seeds must be the same), or two sequences in the same seed order. The interval
    is mean ± t_{(1+confidence)/2, n-1} · sd / √n, sd the sample standard deviation of the
    differences; with one pair it is (-inf, inf): one seed shows nothing.
    """
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise ValueError("give two mappings seed -> value, or two sequences")
    if isinstance(a, Mapping):
        if set(a) != set(b):
            raise ValueError(f"the seeds differ: {sorted(map(str, a))} and {sorted(map(str, b))}")
        diffs = [a[s] - b[s] for s in a]
    else:
        if len(a) != len(b):
            raise ValueError(f"{len(a)} values paired with {len(b)}")
        diffs = [x - y for x, y in zip(a, b, strict=True)]
    if not diffs:
        raise ValueError("no pairs")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n, mean = len(diffs), statistics.fmean(diffs)
    if n == 1:
        return PairedDifference(mean, (-math.inf, math.inf), 1)
    half = t_quantile((1 + confidence) / 2, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return PairedDifference(mean, (mean - half, mean + half), n)


def verdict_words(interval: tuple[float, float], margin: float | None = None) -> str:
    """The words for a difference's interval (of a - b, higher is better):

    ``"ahead"`` when the whole interval is above 0, ``"behind"`` when it is below 0 (these two
    first); ``"level"`` only when a ``margin`` fixed in advance is given and the whole interval
    lies within ±margin; otherwise ``"not shown"``.
    """
    low, high = interval
    if not low <= high:
        raise ValueError(f"not an interval: {interval}")
    if margin is not None and not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if low > 0:
        return "ahead"
    if high < 0:
        return "behind"
    if margin is not None and -margin <= low and high <= margin:
        return "level"
    return "not shown"


def difference_table(pairs: Iterable[tuple[str, Runs, Runs]],
                     columns: Sequence[tuple[str, str, str]], head: str = "run") -> list[str]:
    """Markdown rows of differences to a baseline, one row per ``(name, runs, baseline)``.

    ``columns``: ``(header, metric key, "paired" or "by_seed")`` each: the mean same-seed
    difference with its 95 % interval and word (:func:`paired_cell`), or the seed-by-seed
    differences (:func:`by_seed`).
    """
    cell = {"paired": paired_cell, "by_seed": by_seed}
    lines = [f"| {head} | " + " | ".join(h for h, _, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name, runs, base in pairs:
        lines.append(f"| {name} | " + " | ".join(cell[kind](runs, base, key)
                                                  for _, key, kind in columns) + " |")
    return lines


def per_class_table(results: Mapping[str, Runs], classes: Sequence[str],
                    head: str = "model") -> list[str]:
    """Markdown rows of the seed-mean IoU (%) of every class, one row per entry."""
    lines = ["Per-class IoU (%), seed mean:", "",
             f"| {head} | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for name, runs in results.items():
        means = [statistics.fmean(r["iou"][k] for r in runs) for k in range(len(classes))]
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in means) + " |")
    return lines
