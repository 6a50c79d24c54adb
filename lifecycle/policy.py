"""When a failed ``run()`` or loop is started again, when a recovery is tried again, and when
to give up.

Two rules bound every loop of restarts or recoveries (``docs/supervision.md`` explains them):

- the **window** (OTP's restart intensity, systemd's start limit): more than
  ``max_restarts`` restarts and recoveries in any ``window`` seconds escalates. It stops a
  fast loop quickly, and only a fast one;
- the **streak**: a restart or recovery is a success only when the service then stays up (or
  healthy) for ``stable_period`` seconds. Restarts that were not a success are counted in a
  row whatever their spacing, and the count resets only after a stable period. More than
  ``max_restarts`` unsuccessful restarts of one ``run()`` or loop, or ``max_recoveries``
  unsuccessful health recoveries, escalate. A slow loop cannot escape it: spacing the
  failures further apart does not reset the count, only running well does.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from .errors import ConfigError
from .stage import check_timeout

RestartOn = Literal["failure", "always", "never"]
Escalation = Literal["shutdown", "give_up"]

#: Recovery pauses double with each unsuccessful recovery of an incident, at most this often.
MAX_PAUSE_DOUBLINGS = 10


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff with jitter; a bounded number of restarts and recoveries.

    ``on``: restart after a failure, after any end, or never. ``max_restarts``/``window``:
    at most that many restarts and recoveries in any ``window`` seconds, and at most that
    many restarts in a row of a ``run()`` or loop that did not then run ``stable_period``
    seconds. ``max_recoveries``: health recoveries in a row that did not restore health for
    ``stable_period``. ``stable_period``: ``None`` means ``window`` for restarts and, for
    recoveries, the larger of the service's ``grace_period`` and three ``check_interval``.
    ``then``: what happens when a limit is reached: ``"shutdown"`` stops the app with a
    non-zero exit code (so systemd or Kubernetes take over), ``"give_up"`` leaves the
    service ``FAILED`` and the rest running.
    """

    on: RestartOn = "failure"
    backoff: tuple[float, float] = (0.5, 30.0)
    jitter: float = 0.5
    max_restarts: int = 5
    window: float = 60.0
    then: Escalation = "shutdown"
    max_recoveries: int = 3
    stable_period: float | None = None

    def __post_init__(self) -> None:
        if self.on not in ("failure", "always", "never"):
            raise ConfigError(f"RestartPolicy(on=...) must be failure, always or never, not {self.on!r}")
        if self.then not in ("shutdown", "give_up"):
            raise ConfigError(f"RestartPolicy(then=...) must be shutdown or give_up, not {self.then!r}")
        if not isinstance(self.backoff, tuple) or len(self.backoff) != 2:
            raise ConfigError(f"RestartPolicy(backoff=...) must be (first, cap), got {self.backoff!r}")
        first = check_timeout(self.backoff[0], "RestartPolicy backoff first delay")
        cap = check_timeout(self.backoff[1], "RestartPolicy backoff cap")
        if cap < first:
            raise ConfigError(f"RestartPolicy backoff cap {cap} is below its first delay {first}")
        jitter = self.jitter
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0.0 <= jitter <= 1.0:
            raise ConfigError(f"RestartPolicy(jitter=...) must be within [0, 1], got {self.jitter!r}")
        for knob in ("max_restarts", "max_recoveries"):
            count = getattr(self, knob)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ConfigError(f"RestartPolicy({knob}=...) must be an int >= 0, got {count!r}")
        check_timeout(self.window, "RestartPolicy window")
        stable = self.stable_period
        if stable is not None and (isinstance(stable, bool) or not isinstance(stable, (int, float))
                                   or not math.isfinite(stable) or stable < 0):
            raise ConfigError(
                f"RestartPolicy(stable_period=...) must be None or seconds >= 0, got {stable!r}")

    def wants_restart(self, failed: bool) -> bool:
        return self.on == "always" or (self.on == "failure" and failed)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before restart number ``attempt`` (0-based): capped doubling, minus jitter."""
        first, cap = self.backoff
        base = min(cap, first * (2.0 ** min(attempt, 62)))
        spread = base * self.jitter
        return base - spread * (rng or random).random()

    def run_stable_period(self) -> float:
        """How long a restarted ``run()`` or loop must run for its restart to count as a success."""
        return self.window if self.stable_period is None else float(self.stable_period)

    def health_stable_period(self, grace_period: float, check_interval: float) -> float:
        """How long checks must pass after a recovery for it to count as a success."""
        if self.stable_period is not None:
            return float(self.stable_period)
        return max(grace_period, 3.0 * check_interval)

    def recovery_pause(self, recoveries: int, cooldown: float) -> float:
        """The pause (no checks) after the ``recoveries``-th recovery of one incident.

        ``cooldown`` (at least the first backoff delay), doubled for every earlier recovery
        of the incident that did not help: a recovery that did not work is not retried at
        the same pace.
        """
        base = max(cooldown, self.backoff[0])
        return base * 2.0 ** min(max(recoveries - 1, 0), MAX_PAUSE_DOUBLINGS)


@dataclass
class RestartBudget:
    """The two limits of one service: the sliding window and the streaks (module docstring).

    Memory: ``times`` holds at most ``max_restarts`` instants (older ones are dropped on
    every call); ``streaks`` one int per ``run()`` or loop of the service.
    """

    policy: RestartPolicy
    times: deque[float] = field(default_factory=deque)
    streaks: dict[str, int] = field(default_factory=dict)

    def recent(self, now: float) -> int:
        while self.times and now - self.times[0] >= self.policy.window:
            self.times.popleft()
        return len(self.times)

    def try_take(self, now: float) -> bool:
        """Record one restart at ``now``; False when the window is already full."""
        if self.recent(now) >= self.policy.max_restarts:
            return False
        self.times.append(now)
        return True

    def take_restart(self, where: str, now: float, ran: float) -> tuple[int, str | None]:
        """Record a restart of ``where``, which ran ``ran`` seconds before it ended.

        Returns the restart's place in the current streak (1 for the first after a stable
        run) and ``None``, or ``(0, why)`` when a limit is reached and the policy escalates.
        """
        policy = self.policy
        if self.recent(now) >= policy.max_restarts:  # a fast loop: the window says it first
            return 0, f"more than {policy.max_restarts} restarts in {policy.window:g}s"
        stable = policy.run_stable_period()
        streak = 0 if ran >= stable else self.streaks.get(where, 0)
        if streak >= policy.max_restarts:
            return 0, (f"{where} ended {streak + 1} times in a row, each within {stable:g}s of "
                       f"starting (max_restarts={policy.max_restarts})")
        self.times.append(now)
        self.streaks[where] = streak + 1
        return streak + 1, None
