"""A program for the systemd tests: ``python notify_app.py MODE [BACKEND]``.

MODE ``serve``: serves until SIGTERM. MODE ``block``: once running, blocks its event loop
with ``time.sleep(BLOCK_SECONDS)`` (what a synchronous call in async code does), then
asks for shutdown. Exits with the report's exit code.
"""

from __future__ import annotations

import sys
import time

from lifecycle import Service, Supervisor

BLOCK_SECONDS = 2.0


class Db(Service):
    pass


class Worker(Service):
    depends_on = ("db",)

    async def run(self) -> None:
        if sys.argv[1] == "block":
            await self.sleep(0.5)  # let a few watchdog pings through first
            time.sleep(BLOCK_SECONDS)  # noqa: ASYNC251 -- blocks the event loop: no pings meanwhile
            self.request_shutdown("blocked long enough")
        await self.wait_shutdown()


def main() -> int:
    sup = Supervisor([Db(), Worker()], shutdown_timeout=10.0, name="notify-app", log_report=False)
    report = sup.run(backend=sys.argv[2] if len(sys.argv) > 2 else "asyncio")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
