"""Shared fixtures: the async backends and the real servers (tests/servers/)."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.servers.fixtures"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Core tests run on both backends."""
    return str(request.param)


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend a subprocess app runs ``Supervisor.run(backend=...)`` on."""
    return str(request.param)
