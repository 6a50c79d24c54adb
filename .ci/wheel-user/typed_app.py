"""A user's app, type-checked against the installed wheel only.

`.ci/wheel-check` runs mypy --strict on it with --disallow-any-expr: no expression here may be
typed Any, so anything the public API leaks as Any (a missing py.typed, an unannotated
decorator, an untyped return) fails the check. Then it runs it.
"""

from __future__ import annotations

import sys
from typing import assert_type

from lifecycle import Health, LifecycleReport, RestartPolicy, Service, Stage, Supervisor, every


class Cache(Service):
    start_timeout = 5.0

    async def start(self) -> None:
        self.items: list[int] = []


class Ingest(Service):
    depends_on = ("cache",)
    restart = RestartPolicy(max_restarts=2)
    stop_stages = (Stage("drain", 1.0), Stage("close", 1.0))

    def __init__(self, *, batch: int, name: str | None = None) -> None:
        super().__init__(name=name)
        self.batch = batch
        self.seen = 0

    async def run(self) -> None:
        async for n in self.ticks(0.01):
            self.seen = n
            if n >= self.batch:
                self.request_shutdown("batch done")

    @every(60.0)
    async def compact(self) -> None:
        assert_type(self.shutting_down, bool)

    async def check(self) -> Health:
        return Health(ok=True, reason="fine")

    async def drain(self) -> None:
        assert_type(await self.sleep(0.0), bool)

    async def close(self) -> None:
        pass


def main() -> int:
    supervisor = Supervisor([Cache(), Ingest(batch=3)], shutdown_timeout=5.0, log_report=False)
    report = supervisor.run()
    assert_type(report, LifecycleReport)
    assert_type(report.exit_code, int)
    assert_type(report.ok, bool)
    print(f"typed app: ok={report.ok} exit={report.exit_code}")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
