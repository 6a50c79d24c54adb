"""A named step of a service's close, with its own deadline."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from .errors import ConfigError

#: Stage names the supervisor uses for itself in the report.
RESERVED_STAGE_NAMES = frozenset({"tasks", "threads", "start", "run", "check", "recover"})


def check_timeout(value: object, what: str) -> float:
    """Return ``value`` as a float, or raise ConfigError naming ``what`` if not positive+finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} must be positive and finite, got {value!r}")
    return float(value)


def plain_timeout(value: object) -> bool:
    """The common case of :func:`check_timeout` (a positive finite int or float), checked
    without building the message a failure would need: thousands of services check many."""
    return (type(value) is float or type(value) is int) and 0 < value < math.inf


@dataclass(frozen=True)
class Stage:
    """One step of a close: the service's async method ``name`` runs under ``timeout`` seconds.

    A stage that overruns is cancelled (then abandoned if it ignores cancellation) and the
    next stage still runs: a flush that hangs must not prevent the close.

    ``default=True`` marks a deadline nobody chose (a library's default): when a service's
    stages do not fit in the supervisor's ``shutdown_timeout``, default deadlines shrink to
    fit, where an explicit one that does not fit is a ``ConfigError``.
    """

    name: str
    timeout: float
    default: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"stage name must be an identifier, got {self.name!r}")
        if self.name in RESERVED_STAGE_NAMES:
            raise ConfigError(f"stage name {self.name!r} is reserved by the supervisor")
        timeout = self.timeout
        object.__setattr__(self, "timeout", float(timeout) if plain_timeout(timeout)
                           else check_timeout(timeout, f"Stage {self.name!r}"))


def shared_stage(name: str, timeout: float, default: bool = False) -> Stage:
    """``Stage(name, timeout, default=default)``, one object per distinct value (a Stage is
    frozen): a thousand services with the default stop stage share one, built once."""
    if plain_timeout(timeout) and type(name) is str and type(default) is bool:
        return _shared_stage(name, timeout, default)
    return Stage(name, timeout, default=default)


@functools.lru_cache(maxsize=512)
def _shared_stage(name: str, timeout: float, default: bool) -> Stage:
    return Stage(name, timeout, default=default)
