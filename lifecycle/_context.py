"""Which service's code is running right now.

The supervisor sets :data:`current_service` around every hook, loop and spawned task, so
code that observes side effects (the thread-creation hook of the leak checker, log
records) can attribute them to a service without being told.
"""

from __future__ import annotations

from contextvars import ContextVar

current_service: ContextVar[str | None] = ContextVar("lifecycle_current_service", default=None)
