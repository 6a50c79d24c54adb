"""The measured region of a sample, and the profiler hook the harness turns on for it.

A sample function wraps exactly what it measures in ``with Clock() as clock:`` (sync or
around awaits); ``clock.elapsed`` is then the time.perf_counter() difference. When the
harness profiles a subject (to explain a missed goal), the same region is what cProfile
sees, so the profile is about the measured work, not the setup around it.
"""

from __future__ import annotations

import cProfile
import time
from collections.abc import Callable
from types import TracebackType

#: Set by the child process when it profiles; enabled only inside a Clock.
profiler: cProfile.Profile | None = None
#: Set when instructions are counted (benchmarks._instructions): called on entering and on
#: leaving the region, so valgrind counts only the measured work.
toggle: Callable[[], object] | None = None


class Clock:
    def __init__(self) -> None:
        self.began = 0.0
        self.elapsed = 0.0

    def __enter__(self) -> Clock:
        if profiler is not None:
            profiler.enable()
        if toggle is not None:
            toggle()
        self.began = time.perf_counter()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.elapsed = time.perf_counter() - self.began
        if toggle is not None:
            toggle()
        if profiler is not None:
            profiler.disable()
