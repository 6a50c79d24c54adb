"""The cost of the default observers (metrics counters, blocking detector) on the overhead
and shutdown benchmarks. Goal: < 2 %.

Each round runs a sample with the observers and one with none, in one process,
alternating, and records both the wall-clock time the benchmark measures and the process's
CPU time over the whole sample (all threads, the detector's included; less sensitive to
other processes on a shared machine than the wall clock). Medians over the rounds, and the
best CPU time (noise only ever adds time, so the best is the steadiest estimate):

    .venv/bin/python -m benchmarks._observers [--repeats N] [--services N]

Then the observers' own work, measured directly, and (where valgrind is installed) the
instructions each sample executes with and without them: a count that does not depend on
what else the machine is doing.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import lifecycle.observe
from benchmarks import overhead, shutdown
from benchmarks._instructions import without_probes


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(sample: Callable[[int], float], n: int, observers: bool) -> tuple[float, float]:
    saved = lifecycle.observe.default_observers
    if not observers:
        lifecycle.observe.default_observers = lambda sup: []
    try:
        cpu = _cpu()
        wall = sample(n)
        return wall, _cpu() - cpu
    finally:
        lifecycle.observe.default_observers = saved


def compare(sample: Callable[[int], float], n: int, repeats: int) -> dict[str, Any]:
    _timed(sample, n, True)  # warm-up: imports, first-call costs
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for i in range(repeats):
        for observers in ((True, False) if i % 2 else (False, True)):
            runs[observers].append(_timed(sample, n, observers))
    out: dict[str, Any] = {}
    for key, index, pick in (("wall", 0, statistics.median), ("cpu", 1, statistics.median),
                             ("cpu_best", 1, min)):
        on = pick(r[index] for r in runs[True])
        off = pick(r[index] for r in runs[False])
        out[key] = (on, off, (on - off) / off)
    return out


def direct(n: int, repeats: int) -> dict[str, float]:
    """The observers' own CPU cost, measured directly (immune to the machine's noise):
    per-event listener time times the events a run of ``n`` services emits, plus attach
    and detach (the detector's thread start and join), plus the detector's probes per
    second of an idle loop."""
    import time
    import timeit

    import anyio

    from lifecycle import Service, Supervisor
    from lifecycle.blocking import BlockingDetector
    from lifecycle.events import Event
    from lifecycle.metrics import LifecycleMetrics

    events: list[Event] = []

    async def one_run() -> None:
        sup = Supervisor([Service(name=f"s{i}") for i in range(n)], observers=[events.append])
        async with sup:
            pass

    anyio.run(one_run)
    sink = Supervisor([Service(name="x")])
    listener: Any = None

    def capture(callback: Any) -> Any:
        nonlocal listener
        listener = callback
        return lambda: None

    sink.subscribe = capture  # type: ignore[method-assign]
    LifecycleMetrics().attach(sink)
    per_run = min(timeit.repeat(lambda: [listener(e) for e in events], number=1, repeat=repeats))
    per_run -= min(timeit.repeat(lambda: [None for e in events], number=1, repeat=repeats))

    async def attach_detach() -> float:
        started = time.process_time()
        for _ in range(repeats):
            BlockingDetector(0.5).attach(sink)()
        return (time.process_time() - started) / repeats

    thread = anyio.run(attach_detach)

    async def idle(seconds: float, detector: bool) -> float:
        detach = BlockingDetector(0.5).attach(sink) if detector else None
        started = time.process_time()
        await anyio.sleep(seconds)
        used = time.process_time() - started
        if detach is not None:
            detach()
        return used

    per_second = (anyio.run(idle, 3.0, True) - anyio.run(idle, 3.0, False)) / 3.0
    return {"events": len(events), "listener": per_run, "detector_run": thread,
            "detector_per_second": per_second}


SAMPLES = {"overhead": overhead.sample_lifecycle, "shutdown": shutdown.sample_lifecycle}


def _child(variant: str, bench: str, n: int, samples: int) -> None:
    """Run ``samples`` samples with the default observers (``defaults``; the detector's
    probes off: they depend on wall time, which valgrind stretches 50-fold) or none."""
    if variant == "none":
        lifecycle.observe.default_observers = lambda sup: []
    else:
        without_probes()
    for _ in range(samples):
        SAMPLES[bench](n)


def instructions(n: int) -> dict[str, float] | None:
    """Instructions per sample (valgrind's count: the same on a busy machine as on a quiet
    one) with the default observers and without; None without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    out: dict[str, float] = {}
    for bench in SAMPLES:
        per: dict[str, float] = {}
        for variant in ("none", "defaults"):
            counts = []
            for samples in (1, 3):
                run = subprocess.run(
                    [valgrind, "--tool=cachegrind", "--cache-sim=no",
                     "--cachegrind-out-file=/dev/null", sys.executable, "-m",
                     "benchmarks._observers", "--child", variant, bench, str(n), str(samples)],
                    capture_output=True, text=True, check=True,
                    env={**os.environ, "PYTHONPATH": os.getcwd()})
                found = re.search(r"I\s+refs:\s+([\d,]+)", run.stderr)
                assert found, run.stderr[-2000:]
                counts.append(int(found.group(1).replace(",", "")))
            per[variant] = (counts[1] - counts[0]) / 2  # start-up and imports cancel out
        out[bench] = (per["defaults"] - per["none"]) / per["none"]
        out[f"{bench}_none"] = per["none"]
    return out


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--child"]:
        variant, bench, n, samples = sys.argv[2:6]
        _child(variant, bench, int(n), int(samples))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks._observers")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--services", type=int, default=1000)
    args = parser.parse_args(argv)
    print(f"| benchmark ({args.services} services, {args.repeats} rounds) | measure "
          "| default observers | none | cost |\n|---|---|---:|---:|---:|")
    for label, sample in (("overhead: start + stop", overhead.sample_lifecycle),
                          ("shutdown latency", shutdown.sample_lifecycle)):
        result = compare(sample, args.services, args.repeats)
        for key, what in (("wall", "wall clock (the benchmark's figure), median"),
                          ("cpu", "CPU time of the whole sample, median"),
                          ("cpu_best", "CPU time of the whole sample, best")):
            on, off, cost = result[key]
            print(f"| {label} | {what} | {on * 1e3:.1f} ms | {off * 1e3:.1f} ms "
                  f"| {cost * 100:+.1f} % |")
    d = direct(args.services, args.repeats)
    print(f"\nmeasured directly, {args.services} services: {d['events']} events, the metrics "
          f"listener {d['listener'] * 1e3:.2f} ms for all of them; the detector's thread start "
          f"and join {d['detector_run'] * 1e3:.2f} ms per run; its probes "
          f"{d['detector_per_second'] * 1e3:.2f} ms of CPU per second of an idle loop")
    counted = instructions(args.services)
    if counted is not None:
        for bench in SAMPLES:
            print(f"instructions per {bench} sample (valgrind, detector probes off): "
                  f"{counted[bench + '_none'] / 1e6:.0f} M without observers, the defaults "
                  f"{counted[bench] * 100:+.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
