"""Side-by-side benchmarks of lifecycle and its peers.

Every benchmark module exposes ``run(size) -> list[Result]`` with ``size`` "full" or
"smoke"; ``python -m benchmarks`` runs them all, prints the tables and (full runs only)
writes docs/performance.md. Figures are ratios on one machine, not absolute truths: each
subject runs in a fresh subprocess, repeated, and the median (and best) is reported.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Size = Literal["full", "smoke"]

TIMES = "\u00d7"  # the multiplication sign, for ratios in tables
DASH = "\u2013"  # an en dash, for empty cells

#: The benchmark modules, in the order they run and appear in the report.
MODULES: tuple[str, ...] = (
    "shutdown", "startup", "overhead", "leakcheck", "influx", "spool", "fallback",
    "rolling_restart", "soak",
)


@dataclass(frozen=True)
class Result:
    """One row of a benchmark table: a subject's figure, its ratio to the table's
    reference, and (for lifecycle's rows) the goal it is held to and whether it was met."""

    benchmark: str
    subject: str
    figure: float  # the median of the samples
    unit: str
    ratio: float | None = None  # figure / the reference figure of this benchmark
    goal: str = ""
    met: bool | None = None
    best: float | None = None  # min for times, max for rates
    samples: int = 1
    note: str = ""
    #: Extra facts about this row for the report (e.g. ordering violations).
    extra: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def sane(self) -> bool:
        """Positive and finite: what the smoke test checks."""
        return math.isfinite(self.figure) and self.figure > 0


@dataclass(frozen=True)
class Stats:
    median: float
    best: float
    n: int


def summarize(samples: Sequence[float], *, higher_is_better: bool = False) -> Stats:
    """Median and best of repeated measurements."""
    if not samples:
        raise ValueError("no samples")
    best = max(samples) if higher_is_better else min(samples)
    return Stats(statistics.median(samples), best, len(samples))


def ratio(value: float, reference: float) -> float | None:
    return value / reference if reference > 0 and math.isfinite(reference) else None
