"""When a failed ``run()`` or loop is started again, and when to give up."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from .errors import ConfigError
from .stage import check_timeout

RestartOn = Literal["failure", "always", "never"]
Escalation = Literal["shutdown", "give_up"]


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff with jitter, bounded by ``max_restarts`` within ``window`` seconds.

    ``on``: restart after a failure, after any end, or never. ``then``: what happens when the
    limit is reached: ``"shutdown"`` stops the app with a non-zero exit code (so systemd or
    Kubernetes take over), ``"give_up"`` leaves the service ``FAILED`` and the rest running.
    """

    on: RestartOn = "failure"
    backoff: tuple[float, float] = (0.5, 30.0)
    jitter: float = 0.5
    max_restarts: int = 5
    window: float = 60.0
    then: Escalation = "shutdown"

    def __post_init__(self) -> None:
        if self.on not in ("failure", "always", "never"):
            raise ConfigError(f"RestartPolicy(on=...) must be failure, always or never, not {self.on!r}")
        if self.then not in ("shutdown", "give_up"):
            raise ConfigError(f"RestartPolicy(then=...) must be shutdown or give_up, not {self.then!r}")
        if len(self.backoff) != 2:
            raise ConfigError(f"RestartPolicy(backoff=...) must be (first, cap), got {self.backoff!r}")
        first = check_timeout(self.backoff[0], "RestartPolicy backoff first delay")
        cap = check_timeout(self.backoff[1], "RestartPolicy backoff cap")
        if cap < first:
            raise ConfigError(f"RestartPolicy backoff cap {cap} is below its first delay {first}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigError(f"RestartPolicy(jitter=...) must be within [0, 1], got {self.jitter!r}")
        count = self.max_restarts
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"RestartPolicy(max_restarts=...) must be an int >= 0, got {count!r}")
        check_timeout(self.window, "RestartPolicy window")

    def wants_restart(self, failed: bool) -> bool:
        return self.on == "always" or (self.on == "failure" and failed)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before restart number ``attempt`` (0-based): capped doubling, minus jitter."""
        first, cap = self.backoff
        base = min(cap, first * (2.0 ** min(attempt, 62)))
        spread = base * self.jitter
        return base - spread * (rng or random).random()


@dataclass
class RestartBudget:
    """Counts restarts in a sliding window; shared by restarts and health recoveries.

    Sharing one budget is what makes an endless recovery loop impossible: every way a
    service can be restarted draws from it.
    """

    policy: RestartPolicy
    times: deque[float] = field(default_factory=deque)

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
