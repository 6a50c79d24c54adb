"""The writer's knobs in one frozen, validated object.

Why one object: every part of the writer (buffer, senders, retries, breaker, spool, stop
stages) reads its knobs from here, and every invalid value is refused here, with a
``ConfigError`` naming the knob, before anything opens or starts. ``InfluxWriter(...)``
takes the same names as keywords and builds one of these; or pass ``settings=``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lifecycle import ConfigError, Stage

from ..spool import Synchronous
from ._point import TO_NS

WhenFull = Literal["spool", "drop_oldest", "drop_newest"]
Durability = Literal["memory", "disk"]

#: Default stop-stage deadlines (seconds); the ones not given shrink to fit the budget.
ACCEPT_DEADLINE = 1.0
FLUSH_DEADLINE = 5.0
SPOOL_DEADLINE = 2.0
CLOSE_DEADLINE = 3.0


def _seconds(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive, finite number of seconds, got {value!r}")


def _count(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, allowed))}")


def _range(name: str, value: object) -> None:
    """A ``(first, most)`` pair of seconds with ``first <= most``."""
    if not isinstance(value, tuple) or len(value) != 2:
        raise ConfigError(f"{name} must be a (first, most) pair of seconds, got {value!r}")
    _seconds(f"{name}[0]", value[0])
    _seconds(f"{name}[1]", value[1])
    if value[0] > value[1]:
        raise ConfigError(f"{name} needs first <= most, got {value!r}")


@dataclass(frozen=True)
class InfluxSettings:
    """What an :class:`~lifecycle.adapters.influx.InfluxWriter` is tuned with (docs/influx.md
    says what each knob does). ``spool_path=None`` is ``var/spool/<writer name>``; a stop
    deadline left at ``None`` is its default, shrunk to fit a smaller shutdown budget."""

    spool_path: str | os.PathLike[str] | None = None
    batch_size: int = 5000
    flush_interval: float = 1.0
    max_buffer_points: int = 100_000
    max_buffer_bytes: int = 32 * 2**20
    when_full: WhenFull = "spool"
    precision: str = "ns"
    max_attempts: int = 5
    retry_backoff: tuple[float, float] = (0.5, 30.0)
    retry_jitter: float = 0.5
    breaker_threshold: int = 5
    breaker_reset: tuple[float, float] = (5.0, 60.0)
    timeout: float = 10.0
    connect_timeout: float = 5.0
    spool_max_bytes: int = 256 * 2**20
    spool_fsync: Synchronous = "full"
    max_in_flight: int = 2
    flush_timeout: float | None = None
    spool_timeout: float | None = None
    close_timeout: float | None = None
    durability: Durability = "disk"
    commit_interval: float = 0.05

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_buffer_points", "max_buffer_bytes", "max_attempts",
                     "breaker_threshold", "spool_max_bytes", "max_in_flight"):
            _count(name, getattr(self, name))
        if self.max_buffer_points < self.batch_size:
            raise ConfigError(f"batch_size={self.batch_size} is above max_buffer_points="
                              f"{self.max_buffer_points}: needs batch_size <= max_buffer_points")
        for name in ("flush_interval", "timeout", "connect_timeout"):
            _seconds(name, getattr(self, name))
        for name in ("flush_timeout", "spool_timeout", "close_timeout"):
            _seconds(name, getattr(self, name), optional=True)
        _seconds("commit_interval", self.commit_interval)
        if self.commit_interval > 60:
            raise ConfigError(f"commit_interval must be in (0, 60] seconds, "
                              f"got {self.commit_interval!r}")
        _one_of("when_full", self.when_full, ("spool", "drop_oldest", "drop_newest"))
        _one_of("durability", self.durability, ("memory", "disk"))
        _one_of("precision", self.precision, tuple(TO_NS))
        _one_of("spool_fsync (the spool's synchronous)", self.spool_fsync,
                ("full", "normal", "off"))
        _range("retry_backoff", self.retry_backoff)
        _range("breaker_reset", self.breaker_reset)
        jitter = self.retry_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) \
                or not 0 <= jitter <= 1:
            raise ConfigError(f"retry_jitter must be within [0, 1], got {jitter!r}")

    @classmethod
    def knobs(cls) -> tuple[str, ...]:
        """The field names: ``InfluxWriter``'s keyword arguments of the same names."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def resolve(cls, settings: InfluxSettings | None, keywords: Mapping[str, Any]
                ) -> InfluxSettings:
        """``settings`` (or the defaults) with the knobs given as keywords on top. A knob
        given both ways, with different values, is refused: which one was meant?"""
        if settings is None:
            return cls(**keywords)
        if not isinstance(settings, InfluxSettings):
            raise ConfigError(f"settings must be an InfluxSettings, got {type(settings).__name__}")
        default = cls()
        clash = [name for name, value in keywords.items()
                 if value != getattr(default, name) and value != getattr(settings, name)]
        if clash:
            raise ConfigError(f"{', '.join(clash)} given both as keyword(s) and in settings=, "
                              "with different values: give each knob one way")
        return settings

    @property
    def disk(self) -> bool:
        """Disk mode: every accepted point is committed to the spool, then sent from there."""
        return self.durability == "disk"

    def stop_stages(self) -> tuple[Stage, ...]:
        """The writer's four stop stages; a deadline not given is a default (it shrinks)."""
        def stage(name: str, timeout: float | None, default: float) -> Stage:
            return Stage(name, default, default=True) if timeout is None else Stage(name, timeout)

        return (stage("accept", None, ACCEPT_DEADLINE),
                stage("flush", self.flush_timeout, FLUSH_DEADLINE),
                stage("spool", self.spool_timeout, SPOOL_DEADLINE),
                stage("close", self.close_timeout, CLOSE_DEADLINE))
