"""A program for the signal tests: ``python signal_app.py MODE``; prints progress lines.

MODE: ``normal`` (starts fast), ``slow_start`` (a start that takes 30 s), ``stubborn``
(a stop stage that hangs). The last line on stdout is the report as JSON.
"""

from __future__ import annotations

import json
import sys

import anyio

from lifecycle import Service, Stage, Supervisor, every
from lifecycle.events import Event


def say(line: str) -> None:
    print(line, flush=True)


class Db(Service):
    async def start(self) -> None:
        if sys.argv[1] == "slow_start":
            say("STARTING db")
            await anyio.sleep(30)


class Api(Service):
    depends_on = ("db",)
    stop_stages = (Stage("drain", 20.0),)

    async def run(self) -> None:
        while await self.sleep(3600):
            pass

    @every(3600)
    async def compact(self) -> None:
        pass

    async def drain(self) -> None:
        if sys.argv[1] == "stubborn":
            say("DRAINING")
            await anyio.sleep(30)


def on_event(event: Event) -> None:
    if event.kind == "AllStarted":
        say("READY")


def main() -> int:
    sup = Supervisor([Db(start_timeout=60.0), Api()], shutdown_timeout=25.0)
    sup.subscribe(on_event)
    report = sup.run(backend=sys.argv[2] if len(sys.argv) > 2 else "asyncio")
    say(json.dumps(report.to_dict()))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
