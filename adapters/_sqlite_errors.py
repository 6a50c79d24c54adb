"""sqlite3's (and aiosqlite's) exceptions as the portable :mod:`lifecycle.adapters.db` hierarchy.

The same app code catches the same errors whichever database won the start; the driver's
exception stays reachable as ``__cause__``. SQLite's extended result codes
(``sqlite_errorname``, Python 3.11+) tell the constraint kinds apart.
"""

from __future__ import annotations

import sqlite3
from typing import NoReturn

from lifecycle.adapters.db import (
    ConnectionLost,
    DatabaseError,
    IntegrityError,
    QueryError,
    QueryTimeout,
    raise_as,
)
from lifecycle.redact import describe_error

_KINDS = {
    "SQLITE_CONSTRAINT_UNIQUE": "unique",
    "SQLITE_CONSTRAINT_PRIMARYKEY": "unique",
    "SQLITE_CONSTRAINT_NOTNULL": "not_null",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "foreign_key",
    "SQLITE_CONSTRAINT_CHECK": "check",
}
_GONE = ("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_NOTADB", "SQLITE_CORRUPT")


def translate(exc: BaseException, where: str) -> DatabaseError | None:
    """The portable error for ``exc`` raised by ``where`` (``"db: execute"``), or None when
    ``exc`` is not a driver error (the app's own exception)."""
    if isinstance(exc, DatabaseError):
        return exc
    code = str(getattr(exc, "sqlite_errorname", "")) or _code_from_text(str(exc))
    text = f"{where}: {describe_error(exc, ())}"
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(text, _KINDS.get(code, "other"))
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return QueryTimeout(text)  # another connection held the lock past busy_timeout
    if code == "SQLITE_READONLY_DBMOVED" or code.startswith(_GONE):
        return ConnectionLost(text)  # the file was deleted, moved, or became unreadable
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):
        return ConnectionLost(text)  # "Cannot operate on a closed database."
    if isinstance(exc, ValueError) and str(exc) == "Connection closed":
        return ConnectionLost(text)  # aiosqlite: its worker thread has ended
    if isinstance(exc, sqlite3.Error):
        return QueryError(text)
    return None


def _code_from_text(text: str) -> str:
    """Python 3.10 has no ``sqlite_errorname``: the extended code from the message."""
    for prefix, kind in (("UNIQUE", "UNIQUE"), ("NOT NULL", "NOTNULL"),
                         ("FOREIGN KEY", "FOREIGNKEY"), ("CHECK", "CHECK")):
        if text.startswith(f"{prefix} constraint failed"):
            return f"SQLITE_CONSTRAINT_{kind}"
    for message, code in _MESSAGES:
        if message in text:
            return code
    return ""


# Python 3.10: the primary codes by their fixed messages. READONLY stands for READONLY_DBMOVED
# there: a connection this adapter opened read-write (its start sets the journal mode) only
# meets it when the file under it was deleted or moved.
_MESSAGES = (
    ("database is locked", "SQLITE_BUSY"),
    ("attempt to write a readonly database", "SQLITE_READONLY_DBMOVED"),
    ("disk I/O error", "SQLITE_IOERR"),
    ("unable to open database file", "SQLITE_CANTOPEN"),
    ("file is not a database", "SQLITE_NOTADB"),
    ("database disk image is malformed", "SQLITE_CORRUPT"),
)


def reraise(exc: Exception, where: str) -> NoReturn:
    """Raise the portable error for ``exc`` from it; ``exc`` itself when it has none."""
    raise_as(translate(exc, where), exc, ())
