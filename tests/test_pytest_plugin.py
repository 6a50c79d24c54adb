"""The pytest plugin, run in real pytest subprocesses: per-test leak checks and clean_shutdown."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
timeout = 60
lifecycle_leaks_settle = 0.1
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makeini(INI)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def line_of(source: str, text: str) -> int:
    """The line of ``text`` in ``source`` as pytester writes it (dedented, stripped)."""
    lines = textwrap.dedent(source).strip().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


LEAKY_SYNC = """
import threading
import pytest

stop = threading.Event()

def test_leaks():
    threading.Thread(target=stop.wait, name="leaker", daemon=True).start()

def test_clean():
    worker = threading.Thread(target=lambda: None)
    worker.start()
    worker.join()

@pytest.mark.allow_leaks
def test_exempt():
    threading.Thread(target=stop.wait, name="exempt", daemon=True).start()

@pytest.mark.allow_leaks("cache-*")
def test_allowed_by_name():
    threading.Thread(target=stop.wait, name="cache-1", daemon=True).start()

@pytest.mark.allow_leaks("cache-*")
def test_other_names_still_caught():
    threading.Thread(target=stop.wait, name="not-cache", daemon=True).start()

def park():
    stop.wait()

@pytest.mark.allow_leaks(functions=["park"])
def test_allowed_by_function():
    threading.Thread(target=park, name="parked", daemon=True).start()
"""


def test_leaking_test_errors_with_the_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sync=LEAKY_SYNC)
    result = run(pytester, "--lifecycle-leaks")
    result.assert_outcomes(passed=6, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "the test left threads running",
            "leak check: 1 thread still running * after the check ended (settle 0.1 s)",
            f"- thread `leaker` (daemon) started at test_sync.py:{line_of(LEAKY_SYNC, 'leaker')}, "
            "still in `threading.Event.wait`",
            "*ERROR at teardown of test_other_names_still_caught*",
            f"- thread `not-cache` (daemon) started at test_sync.py:"
            f"{line_of(LEAKY_SYNC, 'not-cache')}, *",
        ]
    )
    errors = [line for line in result.stdout.lines if line.startswith("ERROR ")]
    assert len(errors) == 2, result.stdout.str()


def test_off_by_default_and_on_through_the_ini(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sync=LEAKY_SYNC)
    run(pytester).assert_outcomes(passed=6)
    pytester.makeini(INI + "lifecycle_leaks = true\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, errors=2)


def test_option_and_marker_are_registered(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines(["*--lifecycle-leaks*", "*lifecycle_leaks*"])
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(["*allow_leaks(*patterns, functions=()):*"])


FIXTURES = """
        import threading
        import pytest

        stop = threading.Event()

        @pytest.fixture(scope="module")
        def shared_worker():
            worker = threading.Thread(target=stop.wait, name="shared", daemon=True)
            worker.start()  # lives for the module: not a leak of the first test
            yield worker

        @pytest.fixture
        def tidy_worker():
            done = threading.Event()
            worker = threading.Thread(target=done.wait, name="tidy")
            worker.start()
            yield worker
            done.set()
            worker.join()

        @pytest.fixture
        def sloppy_worker():
            worker = threading.Thread(target=stop.wait, name="sloppy", daemon=True)
            worker.start()  # sloppy
            yield worker

        def test_shared(shared_worker, tidy_worker):
            assert shared_worker.is_alive() and tidy_worker.is_alive()

        def test_shared_again(shared_worker):
            pass

        def test_sloppy(sloppy_worker):
            pass
        """


def test_fixtures_are_inside_the_check(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixtures=FIXTURES)
    result = run(pytester, "--lifecycle-leaks")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_sloppy*",
            f"- thread `sloppy` (daemon) started at test_fixtures.py:"
            f"{line_of(FIXTURES, 'worker.start()  # sloppy')}, *",
        ]
    )


def test_unhandled_thread_exception_is_an_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_crash="""
        import threading

        def test_crash():
            def boom():
                raise ValueError("boom")
            worker = threading.Thread(target=boom, name="crasher")
            worker.start()
            worker.join()
        """
    )
    quiet = "ignore::pytest.PytestUnhandledThreadExceptionWarning"
    result = run(pytester, "--lifecycle-leaks", "-W", quiet)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["- unhandled ValueError in thread `crasher`: boom"])


AIO = """
        import asyncio
        import threading
        import pytest

        stop = threading.Event()

        @pytest.mark.asyncio
        async def test_orphan_task():
            asyncio.create_task(asyncio.sleep(3600), name="orphan")

        @pytest.mark.asyncio
        async def test_thread():
            threading.Thread(target=stop.wait, name="aio-leaker", daemon=True).start()

        @pytest.mark.asyncio
        async def test_clean():
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: None)
            await asyncio.gather(asyncio.sleep(0), asyncio.sleep(0))

        @pytest.mark.asyncio
        @pytest.mark.allow_leaks
        async def test_exempt():
            asyncio.create_task(asyncio.sleep(3600))
        """


def test_pytest_asyncio_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_aio=AIO)
    orphan_line = line_of(AIO, 'name="orphan"')
    result = run(pytester, "--lifecycle-leaks")
    result.assert_outcomes(passed=3, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_thread*",
            f"- thread `aio-leaker` (daemon) started at test_aio.py:{line_of(AIO, 'aio-leaker')}, *",
            "*test_orphan_task*",
            "the test left tasks running",
            f"- task `orphan` (asyncio.tasks.sleep) started at test_aio.py:{orphan_line}, "
            "still in `asyncio.tasks.sleep`",
        ]
    )


ANYIO_TESTS = """
import threading
import anyio
import pytest

stop = threading.Event()

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param

@pytest.fixture
async def task_group():
    async with anyio.create_task_group() as tg:
        yield tg
        tg.cancel_scope.cancel()

@pytest.mark.anyio
async def test_task_left_in_a_fixture_group(task_group):
    task_group.start_soon(anyio.sleep_forever, name="left-behind")

@pytest.mark.anyio
async def test_thread():
    await anyio.to_thread.run_sync(lambda: None)
    threading.Thread(target=stop.wait, name="anyio-leaker", daemon=True).start()

@pytest.mark.anyio
async def test_clean(task_group):
    await anyio.to_thread.run_sync(lambda: None)
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.sleep, 0)
"""


def test_anyio_tests_on_asyncio_and_trio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_anyio_plugin=ANYIO_TESTS)
    result = run(pytester, "--lifecycle-leaks", "-v")
    result.assert_outcomes(passed=4, failed=2, errors=2)
    result.stdout.fnmatch_lines_random(
        [
            "*test_task_left_in_a_fixture_group?asyncio? FAILED*",
            "*test_task_left_in_a_fixture_group?trio? FAILED*",
            "*test_clean?asyncio? PASSED*",
            "*test_clean?trio? PASSED*",
            "*ERROR at teardown of test_thread?trio?*",
            "*ERROR at teardown of test_thread?asyncio?*",
            "- task `left-behind` (*sleep_forever) started at test_anyio_plugin.py:"
            f"{line_of(ANYIO_TESTS, 'left-behind')}, *",
            "- thread `anyio-leaker` (daemon) started at test_anyio_plugin.py:"
            f"{line_of(ANYIO_TESTS, 'anyio-leaker')}, *",
        ]
    )


CLEAN_SHUTDOWN = """
import threading
import anyio
import pytest
from lifecycle import Service, Supervisor

stop = threading.Event()

class Quiet(Service):
    async def start(self):
        pass

class Leaky(Service):
    async def start(self):
        threading.Thread(target=stop.wait, name="forgotten", daemon=True).start()

class Slow(Service):
    stop_timeout = 0.2

    async def stop(self):
        await anyio.sleep(30)

@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param

@pytest.mark.anyio
async def test_clean(clean_shutdown):
    async with clean_shutdown(Supervisor([Quiet()])) as sup:
        assert sup["quiet"].state.name == "RUNNING"

@pytest.mark.anyio
async def test_leaky(clean_shutdown):
    async with clean_shutdown(Supervisor([Leaky(name="leaky")])):
        pass

@pytest.mark.anyio
async def test_slow(clean_shutdown):
    async with clean_shutdown(Supervisor([Slow()])):
        pass

@pytest.mark.anyio
async def test_body_error_comes_first(clean_shutdown):
    async with clean_shutdown(Supervisor([Slow()])):
        raise KeyError("from the test")

@pytest.mark.asyncio
async def test_under_pytest_asyncio(clean_shutdown):
    async with clean_shutdown(Supervisor([Quiet()])) as sup:
        assert sup.report is not None
"""


def test_clean_shutdown_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_shutdown=CLEAN_SHUTDOWN)
    result = run(pytester, "-v")
    result.assert_outcomes(passed=3, failed=6)
    result.stdout.fnmatch_lines_random(
        [
            "*test_clean?asyncio? PASSED*",
            "*test_clean?trio? PASSED*",
            "*test_under_pytest_asyncio PASSED*",
            "*test_leaky?asyncio? FAILED*",
            "*test_leaky?trio? FAILED*",
            "*test_slow?asyncio? FAILED*",
            "*test_slow?trio? FAILED*",
            "unclean shutdown",
            "*thread `forgotten` (daemon) started by service `leaky` at test_shutdown.py:"
            f"{line_of(CLEAN_SHUTDOWN, 'forgotten')}, *",
            "*KeyError: 'from the test'",
            "*shutdown report:",
        ]
    )
