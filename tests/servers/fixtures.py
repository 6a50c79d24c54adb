"""pytest plugin: real servers and network faults as fixtures.

- `postgres`, `victoria` (session): shared servers; never stall or kill them.
- `fresh_postgres`, `fresh_victoria` (per test): a server of the test's own, for faults.
- `blackhole`, `closed_port`: (host, port) of a dead proxy and of a refused port.
- `haproxy`: a factory, backends (name -> port) -> a started HAProxy closed after the test.
- `unique_tag`: a label value of the test's own (VictoriaMetrics caches empty answers).

The fixtures are synchronous (they manage processes), so any async plugin can use them.
A missing server binary skips the test with an install hint; with
LIFECYCLE_REQUIRE_SERVERS=1 (CI) it fails it instead. Tests using a server fixture get the
`servers` marker, so `-m "not servers"` deselects them.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

import pytest

from tests.servers import ServerUnavailable, sweep_stale
from tests.servers.faults import blackhole as _blackhole
from tests.servers.faults import closed_port as _closed_port
from tests.servers.haproxy import HAProxy
from tests.servers.postgres import PostgresServer, PostgresTemplate
from tests.servers.prometheus import Prometheus
from tests.servers.victoria import VictoriaMetrics

REQUIRE_ENV = "LIFECYCLE_REQUIRE_SERVERS"
T = TypeVar("T")
SERVER_FIXTURES = frozenset(
    {"postgres", "fresh_postgres", "postgres_template", "victoria", "fresh_victoria", "haproxy",
     "prometheus"}
)


def unavailable(reason: str) -> NoReturn:
    """Skip (or, when LIFECYCLE_REQUIRE_SERVERS=1, fail) because a server cannot run."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} [{REQUIRE_ENV}=1: servers are required]", pytrace=False)
    pytest.skip(reason)


def pytest_sessionstart(session: pytest.Session) -> None:
    sweep_stale()  # what a killed earlier run left in /dev/shm or /tmp


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate]:
    """initdb once per session; every PostgreSQL server starts from a copy of it."""
    template = _available(PostgresTemplate)
    template.create()
    try:
        yield template
    finally:
        template.cleanup()


@pytest.fixture(scope="session")
def postgres(postgres_template: PostgresTemplate) -> Iterator[PostgresServer]:
    """The shared PostgreSQL server: `.dsn`, `.host`, `.port`, `.user`, `.password`,
    `.database`. Tests that stall, stop or kill a server use `fresh_postgres`."""
    with PostgresServer(postgres_template) as server:
        yield server


@pytest.fixture
def fresh_postgres(postgres_template: PostgresTemplate) -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own (stop/start/kill/restart/stall/resume)."""
    with PostgresServer(postgres_template) as server:
        yield server


def _available(factory: Callable[[], T]) -> T:
    """`factory()`, or skip/fail (outside the except block: no chained traceback)."""
    try:
        return factory()
    except ServerUnavailable as exc:
        reason = str(exc)
    unavailable(reason)


def _victoria() -> VictoriaMetrics:
    return _available(VictoriaMetrics)


@pytest.fixture(scope="session")
def victoria() -> Iterator[VictoriaMetrics]:
    """The shared VictoriaMetrics: `.url`, `.write_url`, `.flush()`, `.export()`,
    `.count()`. Label the test's points with `unique_tag`."""
    with _victoria() as server:
        yield server


@pytest.fixture
def fresh_victoria() -> Iterator[VictoriaMetrics]:
    """A VictoriaMetrics of this test's own (stop/start/kill/restart/stall/resume)."""
    with _victoria() as server:
        yield server


@pytest.fixture
def haproxy() -> Iterator[Callable[[dict[str, int]], HAProxy]]:
    """A factory: ``haproxy({"a": port_a, "b": port_b})`` starts a haproxy on loopback in
    front of those backends (health-checking ``/readyz``); all are closed after the test."""
    made: list[HAProxy] = []

    def make(backends: dict[str, int]) -> HAProxy:
        proxy = _available(lambda: HAProxy(backends))
        made.append(proxy)
        proxy.start()
        return proxy

    try:
        yield make
    finally:
        for proxy in made:
            proxy.close()


@pytest.fixture
def prometheus() -> Iterator[Prometheus]:
    """A Prometheus of this test's own, scraping ``127.0.0.1:<.target_port>/metrics`` every
    second (bind the app there); ``.query()``, ``.value()``, ``.wait_for()``."""
    with _available(Prometheus) as server:
        yield server


@pytest.fixture
def blackhole() -> Iterator[tuple[str, int]]:
    """(host, port) of a TCP listener that accepts connections and never answers."""
    with _blackhole() as address:
        yield address


@pytest.fixture
def closed_port() -> Iterator[tuple[str, int]]:
    """(host, port) where a connection is refused."""
    with _closed_port() as address:
        yield address


@pytest.fixture
def unique_tag(request: pytest.FixtureRequest) -> str:
    """A label value no other test uses: the test's name plus a random suffix."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name)[:40]
    return f"{name}_{uuid.uuid4().hex[:8]}"
