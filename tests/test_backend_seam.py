"""One seam to the event loop libraries, one outcome type, one stack walker (issue 12)."""

from __future__ import annotations

import ast
import contextvars
import json
import pathlib
import sys
import threading

import anyio
import anyio.lowlevel
import pytest

from lifecycle import Service, Supervisor, _backend
from lifecycle.outcome import Outcome
from lifecycle.stacks import coroutine_frames, coroutine_stack, frame_names, thread_frames

CORE = pathlib.Path(__file__).resolve().parent.parent / "lifecycle"
BACKEND_LIBRARIES = {"asyncio", "trio", "sniffio", "outcome"}

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


def _core_modules() -> list[pathlib.Path]:
    return [p for p in CORE.rglob("*.py")
            if "adapters" not in p.relative_to(CORE).parts
            and "_backend" not in p.relative_to(CORE).parts]


def _imported(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.partition(".")[0])
    return names


def test_no_core_module_outside_the_backend_seam_imports_an_event_loop_library() -> None:
    offenders = {str(p.relative_to(CORE)): sorted(_imported(p) & BACKEND_LIBRARIES)
                 for p in _core_modules() if _imported(p) & BACKEND_LIBRARIES}
    assert offenders == {}


def test_outcomes_are_their_plain_strings_in_text_and_json() -> None:
    assert [o.value for o in Outcome] == ["ok", "error", "timeout", "cancelled", "abandoned",
                                          "skipped"]
    assert Outcome.TIMEOUT == "timeout"
    assert f"{Outcome.ERROR}|{Outcome.OK:>4}|{Outcome.SKIPPED!s}" == "error|  ok|skipped"
    assert json.dumps({"outcome": Outcome.ABANDONED}) == '{"outcome": "abandoned"}'


class Overruns(Service):
    async def stop(self) -> None:
        await anyio.sleep(30)


def test_a_real_run_reports_its_outcomes_as_the_same_strings_as_before(backend: str) -> None:
    class Quits(Service):
        async def run(self) -> None:
            self.request_shutdown("done")

    sup = Supervisor([Overruns(name="slow", stop_timeout=0.05), Quits(name="quits")],
                     name="app", shutdown_timeout=5.0)
    report = sup.run(backend=backend, handle_signals=False, exit_on_stuck_threads=False)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["startup"]["slow"]["outcome"] == "ok"
    assert data["shutdown"]["slow"]["stop"]["outcome"] == "timeout"
    assert "await anyio.sleep(30)" in data["shutdown"]["slow"]["stop"]["stack"]


@pytest.mark.anyio
async def test_the_seam_names_the_running_backend_and_reads_its_clock(anyio_backend: str) -> None:
    backend = _backend.current()
    assert backend is not None and backend.name == anyio_backend
    assert backend is _backend.named(anyio_backend)
    assert _backend.now() == pytest.approx(anyio.current_time(), abs=0.5)
    assert backend.now() == pytest.approx(_backend.now(), abs=0.5)


def test_outside_any_task_there_is_no_backend_and_unknown_names_are_refused() -> None:
    assert _backend.current() is None
    with pytest.raises(ValueError, match="'curio'"):
        _backend.named("curio")


@pytest.mark.anyio
async def test_a_detached_task_runs_in_a_copy_of_the_given_context_and_nobody_awaits_it(
        anyio_backend: str) -> None:
    seen: list[str] = []
    done = anyio.Event()

    async def main() -> None:
        seen.append(marker.get())
        marker.set("changed inside")
        done.set()

    context = contextvars.copy_context()
    context.run(marker.set, "given")
    _backend.spawn_detached(main, context, "detached")
    with anyio.fail_after(10):
        await done.wait()
    assert seen == ["given"]
    assert context.run(marker.get) == "given"  # the task changed its copy only


@pytest.mark.anyio
async def test_the_task_hook_sees_each_new_task_until_removed(anyio_backend: str) -> None:
    backend = _backend.current()
    assert backend is not None
    spawned: list[tuple[object, object]] = []

    async def child() -> None:
        await anyio.lowlevel.checkpoint()

    remove = backend.install_task_hook(
        lambda task, coro, context: spawned.append((task, coro)))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(child, name="watched")
    finally:
        remove()
    async with anyio.create_task_group() as tg:
        tg.start_soon(child, name="after")
    names = [backend.task_name(task) for task, _ in spawned]  # asyncio names it after creation
    assert names[-1].endswith("watched") and not any(n.endswith("after") for n in names)
    assert backend.task_coro(spawned[-1][0]) is spawned[-1][1]
    assert backend.current_task() in backend.all_tasks()
    me = backend.current_task()
    assert backend.task_coro(me) is not None
    marker.set("this task's")
    context = backend.task_context(me)  # None on asyncio before Python 3.12
    assert context is None or context.get(marker) == "this task's"


async def _stuck(event: anyio.Event) -> None:
    await event.wait()  # the line a stack should name


@pytest.mark.anyio
async def test_a_coroutine_stack_names_the_users_line_and_what_it_waits_in() -> None:
    event = anyio.Event()
    coro = _stuck(event)
    async with anyio.create_task_group() as tg:
        async def drive() -> None:
            await coro

        tg.start_soon(drive)
        await anyio.sleep(0.01)
        frames = coroutine_frames(coro)
        text = coroutine_stack(coro)
        assert frames[0].f_code.co_name == "_stuck"
        assert "await event.wait()  # the line a stack should name" in text
        assert "waiting in anyio." in text
        assert len(coroutine_frames(coro, limit=1)) == 1
        event.set()


def test_a_thread_stack_is_outermost_first_and_capped() -> None:
    frame = sys._getframe()
    frames = thread_frames(frame)
    assert frames[-1] is frame
    assert len(thread_frames(frame, limit=2)) == 2
    assert thread_frames(frame, limit=2)[-1] is frame
    assert frame_names(frame)[3] == f"{__name__}.test_a_thread_stack_is_outermost_first_and_capped"
    assert threading.current_thread().ident is not None
