"""``observers=``: attached for a run (constructor, ``run()`` or ``serve()``), detached once
the report is complete."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from lifecycle import Service, Supervisor
from lifecycle.events import AllStarted, Event, Stopped


class Recorder:
    """An observer with ``attach``: records the kinds it saw and when it was detached."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.attached_to: Supervisor | None = None
        self.detached_after: list[str] | None = None

    def attach(self, sup: Supervisor) -> Callable[[], None]:
        self.attached_to = sup
        unsubscribe = sup.subscribe(lambda e: self.kinds.append(e.kind))

        def detach() -> None:
            unsubscribe()
            self.detached_after = list(self.kinds)
        return detach


class Quits(Service):
    async def run(self) -> None:
        self.request_shutdown("done")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_attaches_observers_for_the_run_and_detaches_them_after_stopped(backend: str) -> None:
    recorder, seen = Recorder(), []
    sup = Supervisor([Quits(name="q")], observers=[recorder])
    report = sup.run(backend=backend, handle_signals=False, observers=[seen.append])
    assert report.exit_code == 0
    assert recorder.attached_to is sup
    assert recorder.kinds[0] == "ServiceStarting" and recorder.kinds[-1] == "Stopped"
    assert recorder.detached_after == recorder.kinds
    assert [e.kind for e in seen] == recorder.kinds
    sup.emit(AllStarted(None))  # after the run: nobody of the run listens any more
    assert recorder.kinds[-1] == "Stopped" and len(seen) == len(recorder.kinds)


@pytest.mark.anyio
async def test_serve_and_async_with_attach_the_constructors_observers() -> None:
    got: list[Event] = []
    sup = Supervisor([Service(name="x")], observers=[got.append])
    async with sup:
        assert any(isinstance(e, AllStarted) for e in got)
    assert isinstance(got[-1], Stopped)

    served: list[Event] = []
    sup2 = Supervisor([Quits(name="q")])
    with anyio.fail_after(10):
        await sup2.serve(handle_signals=False, observers=[served.append])
    assert isinstance(served[-1], Stopped)


@pytest.mark.anyio
async def test_a_failing_observer_is_logged_and_the_run_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("observer bug")

    sup = Supervisor([Service(name="x")], observers=[broken])
    async with sup:
        pass
    assert sup.report.exit_code == 0
    assert "observer bug" in caplog.text


def test_a_run_imports_neither_prometheus_client_nor_opentelemetry() -> None:
    # "No cost when not installed": the defaults never import them; a fresh interpreter
    # shows it (this test process has both imported already).
    import subprocess
    import sys

    code = ("import sys, anyio\n"
            "from lifecycle import Service, Supervisor\n"
            "async def main():\n"
            "    async with Supervisor([Service(name='x')]):\n"
            "        pass\n"
            "anyio.run(main)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('prometheus_client', 'opentelemetry')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.anyio
async def test_an_observer_of_a_default_class_replaces_the_default() -> None:
    import threading

    from lifecycle.blocking import BlockingDetector

    mine = BlockingDetector(0.2)
    sup = Supervisor([Service(name="x")], observers=[mine])
    async with sup:
        detectors = [t for t in threading.enumerate() if t.name == "lifecycle.blocking-detector"]
        assert detectors == [mine._thread]
