"""A user's test: the clean_shutdown fixture comes from the installed wheel's pytest plugin."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest

from lifecycle import Service, Supervisor

Clean = Callable[[Supervisor], AbstractAsyncContextManager[Supervisor]]


class Worker(Service):
    async def run(self) -> None:
        await self.wait_shutdown()


@pytest.mark.anyio
async def test_the_app_shuts_down_cleanly(clean_shutdown: Clean) -> None:
    async with clean_shutdown(Supervisor([Worker()])) as sup:
        assert sup.started
