"""The machine description, the console tables, and docs/performance.md."""

from __future__ import annotations

import datetime
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType

from benchmarks import DASH, TIMES, Result

PACKAGES = ("lifecycle", "anyio", "trio", "aiomisc", "mode-streaming", "influxdb-client",
            "aiohttp", "asyncpg", "aiosqlite")


@dataclass
class Section:
    """One benchmark's outcome in a run."""

    module: ModuleType
    results: list[Result] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    profiles: dict[str, str] = field(default_factory=dict)  # subject -> profile text


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError):
        pass
    return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _server_versions() -> dict[str, str]:
    found = {}
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "victoria-metrics"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout:
            found["VictoriaMetrics"] = out.stdout.split("+")[0]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from tests.servers.postgres import find_bindir

        bindir = find_bindir()
        postgres = str(bindir / "postgres") if bindir else shutil.which("postgres")
        if postgres:
            out = subprocess.run([postgres, "--version"], capture_output=True, text=True,
                                 timeout=10)
            match = re.search(r"(\d+(\.\d+)+)", out.stdout)
            if match:
                found["PostgreSQL"] = match.group(1)
    except (OSError, subprocess.SubprocessError, ImportError):
        pass
    return found


def machine() -> dict[str, str]:
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    info = {
        "CPU": f"{_cpu_model()}, {cores} cores ({usable} usable)",
        "Memory": _memory(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
    }
    info.update({pkg: _version(pkg) for pkg in PACKAGES})
    info.update(_server_versions())
    if hasattr(os, "getloadavg"):
        info["Load average at start"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


# ----- formatting ------------------------------------------------------------------------------

def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return DASH
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.{digits}g}"


def _met(result: Result) -> str:
    return "" if result.met is None else ("**met**" if result.met else "**missed**")


def _ratio(result: Result) -> str:
    return DASH if result.ratio is None else f"{fmt(result.ratio)}{TIMES}"


def table(results: Sequence[Result]) -> list[str]:
    """A markdown table of one benchmark's rows."""
    lines = ["| subject | median | best | unit | ratio | goal | | note |",
             "|---|---:|---:|---|---:|---|---|---|"]
    for r in results:
        lines.append(f"| {r.subject} | {fmt(r.figure)} | {fmt(r.best)} | {r.unit} | "
                     f"{_ratio(r)} | {r.goal} | {_met(r)} | {r.note} |")
    return lines


def console(section: Section) -> str:
    """A plain-text table for the terminal."""
    mod = section.module
    title = getattr(mod, "TITLE", mod.__name__)
    head = f"== {title} ({section.seconds:.1f}s)"
    if section.error:
        return f"{head}\n   NOT RUN: {section.error.strip().splitlines()[-1]}\n"
    rows = [("subject", "median", "best", "unit", "ratio", "goal")]
    for r in section.results:
        verdict = "" if r.met is None else (" MET" if r.met else " MISSED")
        rows.append((r.subject, fmt(r.figure), fmt(r.best), r.unit, _ratio(r),
                     f"{r.goal}{verdict}" + (f"  [{r.note}]" if r.note else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    out = [head]
    for row in rows:
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:5], widths[1:],
                                                                      strict=True)), row[5]]
        out.append("   " + "  ".join(cells).rstrip())
    return "\n".join(out) + "\n"


def document(sections: Sequence[Section], *, command: str, began: datetime.datetime,
             seconds: float, info: dict[str, str]) -> str:
    """docs/performance.md."""
    out = [
        "# Performance",
        "",
        f"Generated by `{command}` on {began:%Y-%m-%d %H:%M} UTC ({seconds:.0f} s). Do not "
        "edit by hand: rerun the command (`./dev bench` does) to refresh it. The figures "
        "are ratios on one machine, side by side with peers measured in the same run; "
        "absolute times only mean something next to each other.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items()),
        "",
        "## Method",
        "",
        "- Every subject (lifecycle, each peer, each variant) runs in a fresh Python process, "
        "so event-loop policies, logging set-ups, thread pools and caches of one cannot "
        "bias another. Inside it, each repeat runs its own event loop.",
        "- Times are `time.perf_counter()` around exactly the measured region; a warm-up "
        "repeat is discarded where a benchmark is cheap enough to afford it. The tables give "
        "the median and the best (lowest time, highest rate) of the repeats.",
        "- *ratio* is the figure divided by the reference named in each section; *goal* and "
        "the verdict apply to lifecycle's rows (the goals of issue 8).",
        "- Peers run the same workload written the way their documentation shows; each "
        "section says exactly what every subject does. Everything asyncio runs on the "
        "standard event loop (uvloop is not installed, so aiomisc uses it too); lifecycle "
        "runs on asyncio through anyio, its default.",
        "- The machine may be shared: the load average above says how busy it was when "
        "the run began, and a wide gap between median and best flags a noisy subject.",
        "",
        "## Goals",
        "",
        "| benchmark | subject | goal | measured | |",
        "|---|---|---|---:|---|",
    ]
    for section in sections:
        if section.error:
            name = getattr(section.module, "NAME", section.module.__name__)
            why = section.error.strip().splitlines()[-1]
            out.append(f"| {name} | {DASH} | {DASH} | not run | {why} |")
        for r in section.results:
            if r.goal:
                measured = f"{fmt(r.figure)} {r.unit}"
                if r.ratio is not None:
                    measured += f" ({fmt(r.ratio)}{TIMES})"
                out.append(f"| {r.benchmark} | {r.subject} | {r.goal} | {measured} | {_met(r)} |")
    for section in sections:
        out += ["", *_section(section)]
    return "\n".join(out).rstrip() + "\n"


def _section(section: Section) -> list[str]:
    mod = section.module
    out = [f"## {getattr(mod, 'TITLE', mod.__name__)}", ""]
    for paragraph in (mod.__doc__ or "").strip().split("\n\n"):
        if paragraph.strip():
            out += [" ".join(paragraph.split()), ""]
    subjects: dict[str, str] = getattr(mod, "SUBJECTS", {})
    if subjects:
        out += ["What each subject does:", ""]
        out += [f"- **{name}**: {text}" for name, text in subjects.items()]
        out.append("")
    if section.error:
        out += ["**Not run**:", "", "```text", section.error.strip()[-1500:], "```", ""]
        return out
    out += table(section.results)
    out.append("")
    figure = getattr(mod, "FIGURE", "")  # a plot the benchmark drew, relative to docs/
    if figure:
        out += [f"![{getattr(mod, 'TITLE', mod.__name__)}]({figure})", ""]
    extra = sorted({f"{k}={v}" for r in section.results for k, v in r.extra.items()
                    if k == "services"})
    if extra:
        repeats = max(r.samples for r in section.results)
        out += [f"Size: {', '.join(extra)}; up to {repeats} repeats per subject.", ""]
    missed = [r for r in section.results if r.met is False]
    if missed:
        out += ["### What limits it", ""]
        limits = getattr(mod, "LIMITS", "")
        if limits:
            out += [limits.strip(), "",
                    "*(The analysis above comes from profiles taken when this benchmark was "
                    "written; the profile below is from this run.)*" if section.profiles
                    else "", ""]
        for subject, text in section.profiles.items():
            out += [f"<details><summary>cProfile of the measured region ({subject}): top "
                    "functions by own time, then by cumulative time</summary>", "", "```text",
                    text.strip(), "```", "", "</details>", ""]
    return out
