"""The values the spool hands out and takes in (re-exported by ``lifecycle.adapters.spool``)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ._batch import Batch, as_batch

Synchronous = Literal["full", "normal", "off"]


class SpoolState(str, enum.Enum):
    """``ok``; ``full``: the byte cap was reached (new data is refused and counted until
    replay brings the spool under 90% of the cap) or the disk is full (every append still
    tries, the first that succeeds clears the state); ``closed``."""

    OK = "ok"
    FULL = "full"
    CLOSED = "closed"


class SpoolLockedError(RuntimeError):
    """Another process owns this spool directory."""


@dataclass(frozen=True)
class AppendResult:
    """What happened to the lines handed to :meth:`Spool.append_batches`: all stored or none."""

    stored: int
    refused: int = 0
    reason: str | None = None  # "full" (byte cap), "disk_full", "closed", "error: ..."

    @property
    def ok(self) -> bool:
        return self.refused == 0


@dataclass(frozen=True)
class SpoolChunk:
    """One stored row: ``points`` lines joined by newlines in ``data``, in the order they
    were accepted, tagged with their origin."""

    id: int
    origin: str
    created: float
    points: int
    data: bytes

    @property
    def batch(self) -> Batch:
        return Batch(self.data, self.points)

    @property
    def lines(self) -> tuple[bytes, ...]:
        return tuple(self.batch.lines())

    @property
    def size(self) -> int:
        return self.batch.size


@dataclass(frozen=True)
class DeadLetter:
    """A batch the server refused as a client error (400/401/403/404/413)."""

    id: int
    origin: str
    created: float
    status: int
    reason: str
    lines: tuple[bytes, ...]


@dataclass(frozen=True)
class Rejected:
    """Lines (a sequence or a :class:`Batch`) to move to the dead-letter table, with the
    server's answer."""

    lines: Sequence[bytes] | Batch
    status: int
    reason: str

    @property
    def batch(self) -> Batch:
        return as_batch(self.lines)


@dataclass(frozen=True)
class SpoolStats:
    path: str
    state: SpoolState
    synchronous: Synchronous
    points: int
    chunks: int
    bytes: int
    dead_points: int
    dead_chunks: int
    dead_bytes: int
    max_bytes: int
    refused: int
    refused_reasons: dict[str, int]
    unsettled: int = 0  # rows delivered whose delete waits for room on a full disk
