"""Run user code under a deadline: cancel it when the deadline passes, abandon it if it won't end.

Structured concurrency waits for every child, so a hook that ignores cancellation (a blocking
call in a worker thread, a shielded scope) would hang whoever waits for it. Every hook is
therefore run as a *detached* task on the same event loop: the waiter can stop waiting. A job
that is still running ``ABANDON_GRACE`` seconds after it was cancelled is recorded as
``abandoned`` with the stack of where it was stuck, and the caller moves on.
"""

from __future__ import annotations

import contextvars
import math
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import anyio

from ._backend import now, spawn_detached
from .outcome import Outcome
from .stacks import coroutine_stack

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

#: Seconds a cancelled job gets to actually finish before it is abandoned.
ABANDON_GRACE: Final = 0.25


def unwrap(exc: BaseException) -> BaseException:
    """A group holding exactly one exception is that exception: users see their own error."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@dataclass
class Result:
    """How one piece of user code ended."""

    outcome: Outcome
    elapsed: float
    error: BaseException | None = None
    stack: str | None = None
    value: Any = None
    interrupted: bool = False  # cut short by a shutdown request, not by its own deadline


@dataclass(frozen=True)
class Deadline:
    """The one end time every step of a close is capped by.

    ``end`` is when the budget runs out: no step may *begin* waiting past it. Cancelling a
    step takes a moment to finish, so the cancellation grace (at most ``ABANDON_GRACE``)
    may run past ``end``, but never past ``end + ABANDON_GRACE``: a chain of a hundred
    hung services costs that grace once, not once per service.
    """

    end: float

    def remaining(self) -> float:
        """Seconds of budget left (negative once it is spent)."""
        return self.end - now()

    def grace_after(self, wait: float) -> float:
        """The cancellation grace for a step that first waits ``wait`` seconds."""
        if math.isinf(self.end):
            return ABANDON_GRACE
        return max(0.0, min(ABANDON_GRACE, self.end + ABANDON_GRACE - now() - max(wait, 0.0)))

    def hard_remaining(self) -> float:
        """Seconds until even the last cancellation grace is over."""
        return self.end + ABANDON_GRACE - now()


#: No budget at all (a restart's stop: each stage bounded by its own deadline only).
UNBOUNDED: Final = Deadline(math.inf)


class Job:
    """One call of user code, running detached; see the module docstring."""

    def __init__(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], label: str) -> None:
        self._fn = fn
        self._args = args
        self.label = label
        self.done = anyio.Event()
        self.wake = anyio.Event()
        self.error: BaseException | None = None
        self.value: Any = None
        self.interrupted = False
        self._scope: anyio.CancelScope | None = None
        self._cancel_requested = False
        self._coro: object = None
        self._task: object = None
        self.began = 0.0  # now() when it started, and its deadline (for progress reports)
        self.deadline = 0.0

    def start(self, context: contextvars.Context) -> None:
        self._task = spawn_detached(self._main, context, self.label)

    async def _main(self) -> None:
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._cancel_requested:
                    scope.cancel()
                coro = self._fn(*self._args)
                self._coro = coro
                self.value = await coro
        except anyio.get_cancelled_exc_class():
            raise  # cancelled from outside our scope: the event loop itself is ending
        except BaseException as exc:
            self.error = unwrap(exc)
        finally:
            self.done.set()
            self.wake.set()

    def cancel(self) -> None:
        self._cancel_requested = True
        if self._scope is not None:
            self._scope.cancel()

    def interrupt(self) -> None:
        """A forced shutdown: cancel now and wake the waiter without waiting for the deadline."""
        self.interrupted = True
        self.cancel()
        self.wake.set()

    def stack(self) -> str:
        return coroutine_stack(self._coro)


class Jobs:
    """All user code in flight for one supervisor, so a forced shutdown can reach all of it."""

    def __init__(self) -> None:
        self._active: set[Job] = set()
        #: Abandoned jobs, kept referenced: asyncio holds tasks weakly, and a task that is
        #: still running must not be collected mid-flight. Bounded by the abandoned jobs
        #: still running: those that ended are dropped whenever another is abandoned.
        self.abandoned: list[Job] = []
        self.interrupted = False

    def interrupt_all(self) -> None:
        """A forced shutdown: everything in flight is cancelled, nothing new will run."""
        self.interrupted = True
        self.interrupt_active()

    def in_flight(self) -> list[tuple[str, float, float]]:
        """What user code runs now: ``(label, seconds so far, deadline)``, oldest first."""
        at = now()
        return sorted(((job.label, at - job.began, job.deadline) for job in self._active),
                      key=lambda flight: -flight[1])

    def interrupt_active(self) -> None:
        """Cancel what is in flight now (e.g. the starts, when shutdown is asked mid-startup)."""
        for job in list(self._active):
            job.interrupt()

    async def run(self, fn: Callable[..., Awaitable[Any]], *args: Any, deadline: float,
                  context: contextvars.Context, label: str,
                  grace: float = ABANDON_GRACE) -> Result:
        """Run ``fn(*args)`` detached; return within ``deadline + grace`` seconds, always."""
        began = now()
        if self.interrupted:
            return Result(Outcome.SKIPPED, 0.0)
        job = Job(fn, args, label)
        job.began, job.deadline = began, deadline
        self._active.add(job)
        try:
            job.start(context)
            with anyio.move_on_after(max(deadline, 0.0)):
                await job.wake.wait()
            if job.done.is_set() and not job.interrupted:
                elapsed = now() - began
                if job.error is not None:
                    return Result(Outcome.ERROR, elapsed, job.error)
                return Result(Outcome.OK, elapsed, value=job.value)
            stack = job.stack()
            job.cancel()
            with anyio.move_on_after(grace):
                await job.done.wait()
            elapsed = now() - began
            if not job.done.is_set():
                self.abandoned = [j for j in self.abandoned if not j.done.is_set()]
                self.abandoned.append(job)
                return Result(Outcome.ABANDONED, elapsed, job.error, stack, interrupted=job.interrupted)
            ended = Outcome.CANCELLED if job.interrupted else Outcome.TIMEOUT
            return Result(ended, elapsed, job.error, stack, interrupted=job.interrupted)
        except BaseException:
            job.cancel()  # the waiter itself was cancelled: take the job down with it
            raise
        finally:
            self._active.discard(job)
