"""The worker thread aiosqlite runs each connection on: find it, interrupt its statement,
and close what it opened for a start that was cancelled before it got the connection."""

from __future__ import annotations

import contextlib
import sqlite3
import threading

import aiosqlite


def close_unclaimed(opened: list[sqlite3.Connection]) -> None:
    """Close what the worker opened for a start that was cancelled before it got it.

    aiosqlite drops such a connection unclosed (the file stays open until garbage
    collection, and Python 3.13 warns about it). Called once the worker thread has ended, so
    nothing else uses the connection; closing one already closed does nothing.
    """
    for raw in opened:
        with contextlib.suppress(sqlite3.Error):
            raw.close()


def thread_of(conn: aiosqlite.Connection) -> threading.Thread | None:
    """The worker thread of ``conn``: an attribute since aiosqlite 0.21, the object before."""
    if isinstance(conn, threading.Thread):
        return conn
    thread = getattr(conn, "_thread", None)
    return thread if isinstance(thread, threading.Thread) else None


async def interrupt_statement(conn: aiosqlite.Connection) -> None:
    """Abort the statement the worker thread is running, if any (no-op when idle).

    ``interrupt()`` calls ``sqlite3_interrupt`` directly, from this thread, without
    awaiting: it works while the worker is busy, and even inside a cancelled scope.
    """
    if getattr(conn, "_connection", None) is not None:
        await conn.interrupt()
