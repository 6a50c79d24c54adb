"""A durable on-disk queue of line batches (SQLite, WAL): what a writer could not deliver yet,
or, with a disk-first writer, everything it accepted.

Generic: it stores batches of newline-joined lines and knows nothing of InfluxDB. See
:class:`Spool` and docs/influx.md.
"""

from ._batch import EMPTY, Batch, as_batch
from ._salvage import Quarantine
from ._store import Spool
from ._types import (
    AppendResult,
    DeadLetter,
    Rejected,
    SpoolChunk,
    SpoolLockedError,
    SpoolState,
    SpoolStats,
    Synchronous,
)

__all__ = ["EMPTY", "AppendResult", "Batch", "DeadLetter", "Quarantine", "Rejected", "Spool", "SpoolChunk",
           "SpoolLockedError", "SpoolState", "SpoolStats", "Synchronous", "as_batch"]
