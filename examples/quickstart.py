"""The core in one file: dependencies, a background loop, and a close stage that overruns.

    python examples/quickstart.py            # runs ~3 s, then shuts down and prints the report
    python examples/quickstart.py --forever  # runs until Ctrl-C (press twice to force)
"""

from __future__ import annotations

import argparse
import logging
import sys

import anyio

from lifecycle import Service, Stage, Supervisor, every


class Config(Service):
    async def start(self) -> None:
        await anyio.sleep(0.1)  # e.g. read a file or a secret store
        self.values = {"batch": 3}


class Cache(Service):
    depends_on = ("config",)

    async def start(self) -> None:
        self.items: list[int] = []
        self.log.info("cache ready (batch=%d)", self.dependency("config").values["batch"])  # type: ignore[attr-defined]


class Ingest(Service):
    depends_on = ("cache",)
    stop_stages = (Stage("drain", 1.0), Stage("flush", 1.0), Stage("close", 1.0))

    async def run(self) -> None:
        cache = self.dependency("cache")
        async for n in self.ticks(0.2):  # ends at once when shutdown begins
            cache.items.append(n)  # type: ignore[attr-defined]

    @every(0.5)
    async def report_size(self) -> None:
        self.log.info("cache holds %d items", len(self.dependency("cache").items))  # type: ignore[attr-defined]

    async def drain(self) -> None:
        self.log.info("draining")

    async def flush(self) -> None:
        self.log.info("flushing... to a server that never answers")
        await anyio.sleep(60)  # overruns its 1 s deadline: cancelled, reported with its stack

    async def close(self) -> None:
        self.log.info("closed (the close still ran after the flush overran)")


def app() -> Supervisor:
    """What ``python -m lifecycle check|run examples/quickstart.py:app`` loads."""
    return Supervisor([Config(), Cache(), Ingest()], shutdown_timeout=10.0, name="quickstart",
                      log_report=False)  # main() prints it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="run this long, then shut down")
    parser.add_argument("--forever", action="store_true", help="run until Ctrl-C")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sup = app()
    if not args.forever:
        sup.subscribe(lambda e: _stop_later(sup, args.seconds) if e.kind == "AllStarted" else None)
    report = sup.run()
    print(report.format())
    # A real main() ends with `sys.exit(report.exit_code)`. This demo overruns a stage on
    # purpose, so it says what that code would be and exits 0 when the demo itself worked.
    print(f"\n(a real app would now exit with code {report.exit_code}: the overrunning flush)")
    return 0 if report.exit_code in (0, 4) else report.exit_code


def _stop_later(sup: Supervisor, seconds: float) -> None:
    import threading

    timer = threading.Timer(seconds, sup.request_shutdown, args=(f"demo ran {seconds:g}s",))
    timer.daemon = True
    timer.start()


if __name__ == "__main__":
    sys.exit(main())
