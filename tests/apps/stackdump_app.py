"""A ``Supervisor.run()`` app for the stack-dump test: two services with work in flight.

Logs go to stderr; stdout gets one line per heartbeat so the test can see it keep running.
"""

from __future__ import annotations

import logging
import sys

from lifecycle import Service, Supervisor, every


class Ingest(Service):
    async def run(self) -> None:
        while await self.sleep(3600):
            pass


class Beat(Service):
    def __init__(self) -> None:
        super().__init__(name="beat")
        self.n = 0

    @every(0.1)
    async def heartbeat(self) -> None:
        self.n += 1
        print(f"beat {self.n}", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    report = Supervisor([Ingest(name="ingest"), Beat()], shutdown_timeout=5.0).run(
        backend=sys.argv[1])
    sys.exit(report.exit_code)
