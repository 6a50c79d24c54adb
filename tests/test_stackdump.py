"""SIGUSR1 logs every task and thread with its service and stack; the app keeps running."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from lifecycle import Service, Supervisor
from lifecycle.stackdump import StackDump, dump_stacks
from lifecycle.stacks import service_owners

APP = Path(__file__).parent / "apps" / "stackdump_app.py"
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 here")


class Lines:
    """A pipe read line by line with a deadline (no thread: select on the descriptor)."""

    def __init__(self, stream: object) -> None:
        self.fd = stream.fileno()  # type: ignore[attr-defined]
        self.buf = b""
        self.lines: list[str] = []

    def until(self, wanted: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if wanted in line:
                    return line
            ready, _, _ = select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(self.fd, 65536) if ready else b""
            if ready and not chunk:
                break
            self.buf += chunk
            *done, self.buf = self.buf.split(b"\n")
            self.lines += [d.decode(errors="replace") for d in done]
        raise AssertionError(f"no {wanted!r} within {timeout}s; saw:\n" + "\n".join(self.lines))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigusr1_logs_every_services_tasks_with_stacks_and_the_app_keeps_running(
        backend: str) -> None:
    proc = subprocess.Popen([sys.executable, str(APP), backend], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        out.until("beat 3")
        proc.send_signal(signal.SIGUSR1)
        err.until("stack dump:")
        err.until("thread 'MainThread'")  # one log record, written at once: all of it is here
        dump = "\n".join(err.lines)
        assert "of service 'ingest'" in dump and "of service 'beat'" in dump
        assert "in run\n    while await self.sleep(3600):" in dump  # ingest's run(), stuck there
        assert "thread 'MainThread'" in dump
        seen = len(out.lines)
        out.until(f"beat {int(out.lines[-1].split()[1]) + 3}")  # still beating after the dump
        assert len(out.lines) > seen and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Waits(Service):
    async def run(self) -> None:
        await self.sleep(3600)


@pytest.mark.anyio
async def test_the_dump_names_each_task_of_a_service_in_process() -> None:
    sup = Supervisor([Waits(name="waiter")])
    async with sup:
        await anyio.sleep(0.05)
        text = dump_stacks(service_owners(sup.services))
    assert "of service 'waiter'" in text and "await self.sleep(3600)" in text


@pytest.mark.anyio
async def test_the_handler_is_restored_when_the_run_ends() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    dump = StackDump(signal.SIGUSR1)
    detach = dump.attach(None)
    assert detach is not None and signal.getsignal(signal.SIGUSR1) == dump._handle
    detach()
    assert signal.getsignal(signal.SIGUSR1) == before


def test_stack_dump_signal_none_installs_nothing() -> None:
    assert StackDump(None).attach(None) is None


class Threaded(Service):
    async def start(self) -> None:
        self.spawn_thread(self.work, name="worker")

    @staticmethod
    def work(stop: object) -> None:
        stop.wait()  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_the_dump_names_the_service_that_started_a_thread() -> None:
    sup = Supervisor([Threaded(name="pump")])
    async with sup:
        text = dump_stacks(service_owners(sup.services))
    assert "thread 'pump.worker' of service 'pump':" in text
    assert "in work\n    stop.wait()" in text
