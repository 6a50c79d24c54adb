"""A program for the hardening signal tests: ``python hardening_app.py MODE BACKEND``.

Prints progress lines and log lines (``LOG <level> <message>``) on stdout; one line is the
report as JSON (``REPORT {...}``). MODE:

- ``plain_run``: a ``run()`` that ignores the shutdown event (a plain cancellable sleep),
  with a first stop stage of 20 s;
- ``quick``: a drain stage of 0.3 s;
- ``replace_in_start`` / ``replace_in_run``: a service installs its own SIGTERM handler,
  like uvicorn's ``Server.serve()``;
- ``stuck_thread``: a stop stage blocked in a worker thread for 60 s.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from typing import Any

import anyio

from lifecycle import Service, Stage, Supervisor
from lifecycle.events import Event

MODE = sys.argv[1]


def say(line: str) -> None:
    print(line, flush=True)


def library_handler(signum: int, frame: Any) -> None:
    say(f"LIBRARY GOT {signal.Signals(signum).name}")


class Db(Service):
    async def stop(self) -> None:
        say("DB CLOSED")


class Api(Service):
    depends_on = ("db",)
    stop_stages = (Stage("drain", 20.0),)

    async def start(self) -> None:
        if MODE == "replace_in_start":
            signal.signal(signal.SIGTERM, library_handler)

    async def run(self) -> None:
        if MODE == "replace_in_run":
            signal.signal(signal.SIGTERM, library_handler)
            say("REPLACED")
        if MODE == "plain_run":
            await anyio.sleep(3600)  # does not watch the shutdown event
        else:
            await self.wait_shutdown()

    async def drain(self) -> None:
        if MODE == "quick":
            await anyio.sleep(0.3)
            say("DRAINED")
        elif MODE == "stuck_thread":
            say("STUCK")
            await anyio.to_thread.run_sync(time.sleep, 60)


def on_event(event: Event) -> None:
    if event.kind == "AllStarted":
        say("READY")
    elif event.kind == "ShutdownRequested":
        say("CLOSING")


def main() -> int:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="LOG %(levelname)s %(message)s")
    logging.getLogger("lifecycle.events").setLevel(logging.WARNING)
    stages = (Stage("drain", 1.0),) if MODE == "stuck_thread" else Api.stop_stages
    api = Api()
    api.stop_stages = stages
    sup = Supervisor([Db(), api], shutdown_timeout=25.0, log_report=False)
    sup.subscribe(on_event)
    report = sup.run(backend=sys.argv[2])
    say("REPORT " + json.dumps(report.to_dict()))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
