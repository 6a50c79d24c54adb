"""What the uvicorn and hypercorn drivers share: the lifespan, the listener, the cut."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from ._base import cut_summary
from ._lifespan import Lifespan


class ASGIBackend:
    """An asyncio server on the service's socket plus the app's lifespan; subclasses say
    which tasks serve connections (:meth:`tasks`) and how a connection is asked to close."""

    def __init__(self, lifespan: Lifespan) -> None:
        self.lifespan = lifespan
        self.server: asyncio.Server | None = None

    def tasks(self) -> Iterable[asyncio.Task[Any]]:
        raise NotImplementedError

    async def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()  # not wait_closed(): on 3.12 it waits for every connection

    async def cut(self, grace: float, connections: int) -> str | None:
        """Cancel the serving tasks still running; wait up to ``grace`` for them to end."""
        tasks = [t for t in self.tasks() if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        return cut_summary(len(tasks), connections)

    async def shutdown_lifespan(self) -> None:
        try:
            await self.lifespan.shutdown()
        finally:
            await self.abort()

    async def abort(self) -> None:
        """Release everything at once (a failed start, or after the last stage)."""
        self.lifespan.cancel()
        if self.server is not None:
            self.server.close()
        for task in self.tasks():
            task.cancel()
