"""Instructions executed in the measured region of a benchmark's samples (valgrind).

Wall-clock figures on a shared machine move with whatever else runs; the number of
instructions a sample executes does not. Each subject runs in a fresh process under
valgrind's callgrind with collection off; ``Clock`` (benchmarks._clock) switches it on for
exactly the region the benchmark times, through a two-line C helper compiled on first use
(``CALLGRIND_TOGGLE_COLLECT``; needs valgrind's headers and a C compiler). A warm-up
sample runs uncounted first. The blocking detector's probes are turned off: they run on
wall time, which valgrind stretches about 50-fold.

    python -m benchmarks._instructions [--services N] [--samples K] [--only NAME ...]

prints one line per subject: instructions per sample and per service.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import lifecycle.observe
from benchmarks import _clock
from benchmarks._harness import ROOT, child_env

#: (benchmark module, subject) pairs counted by default: lifecycle and the peers it is
#: compared with in docs/performance.md.
SUBJECTS: dict[str, tuple[str, ...]] = {
    "shutdown": ("lifecycle", "raw anyio", "aiomisc PeriodicService"),
    "overhead": ("lifecycle", "aiomisc"),
    "startup": ("lifecycle", "raw anyio, level by level"),
}

_HELPER = "#include <valgrind/callgrind.h>\nvoid lc_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }\n"


def _helper() -> Path:
    """The shared library whose one function toggles callgrind's collection."""
    out = Path(tempfile.gettempdir()) / "lifecycle-bench-callgrind-toggle.so"
    if not out.exists():
        src = out.with_suffix(".c")
        src.write_text(_HELPER)
        subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src)], check=True)
    return out


def without_probes() -> None:
    """Default observers as usual, but the blocking detector never probes (it runs on wall
    time, which valgrind stretches)."""
    from lifecycle.blocking import BlockingDetector

    saved = lifecycle.observe.default_observers

    def observers(sup: Any) -> list[Any]:
        found = saved(sup)
        for observer in found:
            if isinstance(observer, BlockingDetector):
                observer.interval = 1e9
        return found

    lifecycle.observe.default_observers = observers


def _sample(bench: str, subject: str, services: int) -> Callable[[], object]:
    """One sample of ``subject`` with ``services`` services (startup: 10 levels of them,
    each start() sleeping 20 ms, as in the benchmark)."""
    module = importlib.import_module(f"benchmarks.{bench}")
    fn, kwargs = module._TARGETS[subject]
    if bench == "startup":
        return partial(getattr(module, fn), 10, max(services // 10, 1), 0.02)
    return partial(getattr(module, fn), services, **kwargs)


def _child(request: dict[str, Any]) -> None:
    without_probes()
    sample = _sample(request["bench"], request["subject"], request["services"])
    sample()  # warm-up: imports, first-call costs; not counted
    _clock.toggle = ctypes.CDLL(str(_helper())).lc_toggle
    for _ in range(request["samples"]):
        sample()


def count(bench: str, subject: str, services: int, samples: int) -> float:
    """Instructions per sample in the measured region of ``subject`` of ``bench``."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise RuntimeError("valgrind is not installed")
    _helper()
    request = {"bench": bench, "subject": subject, "services": services, "samples": samples}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run([valgrind, "--tool=callgrind", "--collect-atstart=no",
                        f"--callgrind-out-file={out}", sys.executable, "-m",
                        "benchmarks._instructions", "--child", json.dumps(request)],
                       cwd=ROOT, env=child_env(), capture_output=True, text=True, check=True)
        found = re.search(r"^totals:\s+(\d+)", out.read_text(), re.MULTILINE)
        assert found, "callgrind wrote no totals"
    return int(found.group(1)) / samples


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--child"]:
        _child(json.loads(sys.argv[2]))
        os._exit(0)  # threads a peer left behind must not hold the process open
    parser = argparse.ArgumentParser(prog="python -m benchmarks._instructions")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=list(SUBJECTS), default=list(SUBJECTS))
    args = parser.parse_args(argv)
    print(f"| benchmark | subject | instructions per sample ({args.services} services) "
          "| per service |\n|---|---|---:|---:|")
    for bench in args.only:
        for subject in SUBJECTS[bench]:
            per = count(bench, subject, args.services, args.samples)
            print(f"| {bench} | {subject} | {per / 1e6:,.1f} M | {per / args.services / 1e3:,.1f} k |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
