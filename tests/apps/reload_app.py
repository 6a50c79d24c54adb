"""A program for the reload tests: ``python reload_app.py CONFIG_FILE [BACKEND]``.

``settings`` reads CONFIG_FILE at start and on every reload (SIGHUP) and prints
``LOADED <text>``; a file saying ``hang`` makes its reload hang (cut at its 0.5 s
``reload_timeout``). Prints ``READY`` once started, ``RELOADED failed=<names>`` after each
reload; the last line on stdout is the report as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from lifecycle import Service, Supervisor
from lifecycle.events import Event, ReloadFinished


def say(line: str) -> None:
    print(line, flush=True)


class Settings(Service):
    reload_timeout = 0.5

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.text = ""

    async def start(self) -> None:
        await self._load()

    async def reload(self) -> None:
        if self.path.read_text().strip() == "hang":
            say("HANGING")
            await anyio.sleep_forever()
        await self._load()

    async def _load(self) -> None:
        self.text = self.path.read_text().strip()
        say(f"LOADED {self.text}")


class Api(Service):
    depends_on = ("settings",)

    async def run(self) -> None:
        await self.wait_shutdown()


def on_event(event: Event) -> None:
    if event.kind == "AllStarted":
        say("READY")
    if isinstance(event, ReloadFinished):
        say(f"RELOADED failed={','.join(event.failed)}")


def main() -> int:
    sup = Supervisor([Settings(Path(sys.argv[1])), Api()], shutdown_timeout=10.0,
                     name="reload-app", log_report=False)
    sup.subscribe(on_event)
    report = sup.run(backend=sys.argv[2] if len(sys.argv) > 2 else "asyncio")
    say(json.dumps(report.to_dict()))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
