"""The ASGI lifespan protocol, driven by the service so its failures are start failures.

Both servers run with their own lifespan handling off: the service sends ``startup`` in its
``start()`` (under ``start_timeout``) and ``shutdown`` in its ``lifespan_shutdown`` stage,
and an app's exception reaches the report instead of a server log line and a ``sys.exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]],
                    Callable[[MutableMapping[str, Any]], Awaitable[None]]], Awaitable[None]]


class LifespanFailed(RuntimeError):
    """The app reported (or raised) a failure in its lifespan startup or shutdown."""


class Lifespan:
    """One run of an app's lifespan: ``startup()``, later ``shutdown()``, ``cancel()`` always.

    ``mode="auto"`` treats an app that raises before it asked for the startup event as one
    without lifespan support (as uvicorn and hypercorn do); ``"on"`` makes that a failure;
    ``"off"`` never calls the app for lifespan.
    """

    def __init__(self, app: ASGIApp, mode: str = "auto") -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}  # shared with every request scope (scope["state"])
        self.supported = mode != "off"
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._asked = False
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    async def startup(self) -> None:
        if not self.supported:
            return
        self._task = asyncio.get_running_loop().create_task(self._main(), name="asgi-lifespan")
        await self._exchange("startup")

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app's answer (the stage bounds it)."""
        try:
            if self.supported and self._task is not None and not self._task.done():
                await self._exchange("shutdown")
        finally:
            self.cancel()

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _exchange(self, phase: str) -> None:
        await self._inbox.put({"type": f"lifespan.{phase}"})
        answer = await self._answers.get()
        kind = answer.get("type", "")
        if kind == f"lifespan.{phase}.complete":
            return
        if kind == f"lifespan.{phase}.failed":
            message = str(answer.get("message") or "").strip()
            if message.startswith("Traceback (most recent call last)"):
                message = message.splitlines()[-1]  # Starlette sends the whole traceback
            raise LifespanFailed(f"lifespan {phase} failed" + (f": {message}" if message else ""))
        # the app ended without answering
        error = self._error
        if error is None:
            raise LifespanFailed(f"lifespan {phase}: the app returned without answering")
        if phase == "startup" and self.mode == "auto" and not self._asked:
            self.supported = False  # it never asked: an app without lifespan support
            return
        raise LifespanFailed(f"lifespan {phase} failed: {type(error).__name__}: {error}") from error

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            self._error = exc
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            with contextlib.suppress(Exception):
                self._answers.put_nowait({"type": "ended"})

    async def _receive(self) -> dict[str, Any]:
        self._asked = True
        return await self._inbox.get()

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        await self._answers.put(message)
