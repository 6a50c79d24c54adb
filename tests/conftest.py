"""Shared fixtures: the async backends and the real servers (tests/servers/)."""

from __future__ import annotations

import pytest
from hypothesis import Phase, settings

pytest_plugins = ["tests.servers.fixtures"]

# Hypothesis profiles: "ci" (the default) keeps the property tests to a few fixed-seed
# examples, without shrinking; `./dev test --hypothesis-profile long` runs hundreds and
# shrinks what fails; "explore" runs many without shrinking, to look for failures fast.
settings.register_profile("ci", max_examples=8, derandomize=True, deadline=None,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate],
                          print_blob=True)
settings.register_profile("long", max_examples=300, deadline=None, print_blob=True)
settings.register_profile("explore", max_examples=150, deadline=None, print_blob=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])
settings.load_profile("ci")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Core tests run on both backends."""
    return str(request.param)


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend a subprocess app runs ``Supervisor.run(backend=...)`` on."""
    return str(request.param)
