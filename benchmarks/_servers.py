"""Real servers for the benchmarks that need them, started on demand and shared by a run.

The classes are the test suite's (tests/servers/): VictoriaMetrics, PostgreSQL from its
binaries, a blackhole listener and a refused port. A ``Pool`` starts each the first time
a benchmark asks and closes everything at the end; the smoke test hands in the pytest
fixtures' servers instead, so nothing is started twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


class VictoriaLike(Protocol):
    @property
    def url(self) -> str: ...


class PostgresLike(Protocol):
    @property
    def dsn(self) -> str: ...


@dataclass
class Pool:
    """Servers by role; ``None`` fields are started on first use (and closed by ``close``).

    ``stalled`` is an address that accepts TCP connections and never answers: a
    VictoriaMetrics of its own, frozen with SIGSTOP (a blackhole serves as well).
    """

    victoria: VictoriaLike | None = None
    postgres: PostgresLike | None = None
    closed_port: tuple[str, int] | None = None
    blackhole: tuple[str, int] | None = None
    stalled: tuple[str, int] | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def get_victoria(self) -> VictoriaLike:
        if self.victoria is None:
            from tests.servers.victoria import VictoriaMetrics

            self.victoria = self._stack.enter_context(VictoriaMetrics())
        return self.victoria

    def get_postgres(self) -> PostgresLike:
        if self.postgres is None:
            from tests.servers.postgres import PostgresServer

            self.postgres = self._stack.enter_context(PostgresServer())
        return self.postgres

    def get_closed_port(self) -> tuple[str, int]:
        if self.closed_port is None:
            from tests.servers.faults import closed_port

            self.closed_port = self._stack.enter_context(closed_port())
        return self.closed_port

    def get_blackhole(self) -> tuple[str, int]:
        if self.blackhole is None:
            from tests.servers.faults import blackhole

            self.blackhole = self._stack.enter_context(blackhole())
        return self.blackhole

    def get_stalled(self) -> tuple[str, int]:
        if self.stalled is None:
            from tests.servers.victoria import VictoriaMetrics

            vm: Any = self._stack.enter_context(VictoriaMetrics())
            self._stack.enter_context(vm.stalled())
            self.stalled = (vm.host, int(vm.port))
        return self.stalled

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def using(pool: Pool | None) -> Iterator[Pool]:
    """The given pool, or one of our own that is closed afterwards."""
    if pool is not None:
        yield pool
        return
    own = Pool()
    try:
        yield own
    finally:
        own.close()
