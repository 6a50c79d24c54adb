"""Run one subject's measurements in a fresh Python process and bring the samples back.

Why a process per subject: mode and aiomisc install their own loop policies, logging and
thread pools; the sync influxdb-client leaves threads behind; a previous subject's garbage
or warm caches would bias the next. The child (``python -m benchmarks._child``) imports
the target function, calls it ``warmup + repeats`` times (each call runs its own event loop
and returns one sample), and prints the samples as JSON on its last stdout line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARK = "BENCHMARK-RESULT "


class BenchmarkError(RuntimeError):
    """A subject's process failed, hung, or returned nothing usable."""


@dataclass(frozen=True)
class Samples:
    """What one subject's process measured: one value per repeat, and what each repeat
    reported besides its primary value (``extra`` is the last repeat's)."""

    values: list[float]
    extras: list[dict[str, Any]]

    @property
    def extra(self) -> dict[str, Any]:
        return self.extras[-1] if self.extras else {}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)
    env.pop("PYTHONASYNCIODEBUG", None)
    env["PYTHONHASHSEED"] = "0"
    return env


def run_child(target: str, kwargs: dict[str, Any], *, repeats: int = 1, warmup: int = 0,
              timeout: float = 300.0, profile: bool = False) -> dict[str, Any]:
    """Run ``target`` ("module:function") in a fresh interpreter; return its JSON answer."""
    request = json.dumps({"target": target, "kwargs": kwargs, "repeats": repeats,
                          "warmup": warmup, "profile": profile})
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._child", request], cwd=ROOT, env=child_env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise BenchmarkError(f"{target} did not finish within {timeout:g}s\n"
                             f"{err.decode(errors='replace')[-2000:]}") from None
    text = out.decode(errors="replace")
    answer = next((line[len(MARK):] for line in reversed(text.splitlines())
                   if line.startswith(MARK)), None)
    if proc.returncode != 0 or answer is None:
        raise BenchmarkError(f"{target} failed (exit {proc.returncode}):\n"
                             f"{err.decode(errors='replace')[-3000:]}")
    result: dict[str, Any] = json.loads(answer)
    return result


def measure(target: str, *, repeats: int, warmup: int = 0, timeout: float = 300.0,
            **kwargs: Any) -> Samples:
    """Samples of ``target(**kwargs)``: each call returns a float, or a dict whose
    ``"value"`` is the sample and whose other keys are extras."""
    answer = run_child(target, kwargs, repeats=repeats, warmup=warmup, timeout=timeout)
    values: list[float] = []
    extras: list[dict[str, Any]] = []
    for sample in answer["samples"]:
        if isinstance(sample, dict):
            values.append(float(sample["value"]))
            extras.append({k: v for k, v in sample.items() if k != "value"})
        else:
            values.append(float(sample))
    return Samples(values, extras)


def profile(target: str, *, timeout: float = 300.0, **kwargs: Any) -> str:
    """One call of ``target`` under cProfile in a fresh process: the top functions."""
    answer = run_child(target, kwargs, repeats=1, warmup=1, timeout=timeout, profile=True)
    return str(answer.get("profile", ""))
