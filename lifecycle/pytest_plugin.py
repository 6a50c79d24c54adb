"""pytest plugin: assert clean shutdowns, and catch threads and tasks a test leaves behind.

Registered through the ``pytest11`` entry point, so installing lifecycle is enough:

- ``clean_shutdown`` fixture: ``async with clean_shutdown(Supervisor([...])) as sup:``
  starts the supervisor, yields it, closes it with its production deadlines and fails
  the test with ``report.format()`` unless the report is clean.
- ``--lifecycle-leaks`` (or ini ``lifecycle_leaks = true``): a leak check around every
  test, from before its fixtures are set up to after they are torn down. Leaked threads
  (and unhandled thread exceptions) make the test error at teardown; tasks an async test
  body leaves running make it fail. ``@pytest.mark.allow_leaks`` exempts a test, or with
  arguments adds ignore rules.

lifecycle is imported lazily: loading this plugin costs nothing in test runs that use
neither feature.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest

if TYPE_CHECKING:
    from lifecycle.leaks import IgnoreRule, LeakCheck

_CHECK = pytest.StashKey["LeakCheck"]()
_RULES = pytest.StashKey["list[Any]"]()
_running: list[LeakCheck] = []  # the per-test check of the test being set up / run


class Supervised(Protocol):
    """What ``clean_shutdown`` needs: an async context manager with a ``report``."""

    @property
    def report(self) -> Any: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, *exc_info: Any) -> Any: ...


S = TypeVar("S", bound=Supervised)


# -- options --------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lifecycle", "lifecycle leak checks")
    group.addoption(
        "--lifecycle-leaks",
        action="store_true",
        default=None,
        dest="lifecycle_leaks",
        help="fail tests that leave new threads or tasks running (ini: lifecycle_leaks)",
    )
    parser.addini("lifecycle_leaks", type="bool", default=False, help="leak-check every test (lifecycle)")
    parser.addini(
        "lifecycle_leaks_settle",
        default="1.0",
        help="seconds a per-test leak check waits for new threads and tasks to end",
    )
    parser.addini(
        "lifecycle_leaks_ignore",
        type="linelist",
        default=[],
        help="thread and task name globs the per-test leak check never reports",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_leaks(*patterns, functions=()): exempt a test from the per-test leak check "
        "(--lifecycle-leaks); with arguments, only ignore threads/tasks whose name matches "
        "a glob (or regex, or lifecycle.leaks rule) or whose stack contains a function.",
    )


def _enabled(config: pytest.Config) -> bool:
    option = config.getoption("lifecycle_leaks", default=None)
    return bool(option) if option is not None else bool(config.getini("lifecycle_leaks"))


def _settle(config: pytest.Config) -> float:
    return float(str(config.getini("lifecycle_leaks_settle")))


def _rules(item: pytest.Item) -> list[str | IgnoreRule] | None:
    """Ignore rules for this test; None when it is exempt (or checks are off)."""
    if not _enabled(item.config):
        return None
    from lifecycle.leaks import IgnoreFunction

    rules: list[Any] = list(item.config.getini("lifecycle_leaks_ignore"))
    for marker in item.iter_markers("allow_leaks"):
        functions = marker.kwargs.get("functions", ())
        if not marker.args and not functions:
            return None
        rules.extend(marker.args)
        rules.extend(IgnoreFunction(name) for name in functions)
    return rules


# -- per-test leak check --------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    rules = _rules(item)
    if rules is not None:
        from lifecycle.leaks import LeakCheck

        # tasks are checked inside the event loop, around the test body (see below)
        check = LeakCheck(_settle(item.config), rules, tasks=False).begin()
        item.stash[_CHECK], item.stash[_RULES] = check, rules
        _running.append(check)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Threads started by broader-scoped fixtures outlive the test on purpose."""
    if fixturedef.scope == "function" or not _running:
        return (yield)
    check = _running[-1]
    before = set(threading.enumerate())
    try:
        return (yield)
    finally:
        check.exclude(*(t for t in threading.enumerate() if t not in before))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    obj = getattr(item, "obj", None)
    if _CHECK not in item.stash or not inspect.iscoroutinefunction(obj) or hasattr(obj, "hypothesis"):
        return (yield)
    assert isinstance(item, pytest.Function) and obj is not None
    item.obj = _with_task_check(obj, item.stash[_RULES], _settle(item.config))
    try:
        return (yield)
    finally:
        item.obj = obj


def _with_task_check(
    test: Callable[..., Awaitable[object]], rules: list[Any], settle: float
) -> Callable[..., Awaitable[None]]:
    """The async test body, followed by a check for tasks it left running."""

    @functools.wraps(test)
    async def checked(*args: Any, **kwargs: Any) -> None:
        from lifecycle.leaks import LeakCheck

        check = LeakCheck(settle, rules, threads=False).begin()
        try:
            await test(*args, **kwargs)
        except BaseException:
            await check.finish(settle=0.0)  # release the hooks; never mask the failure
            raise
        report = await check.finish()
        if not report.ok:
            pytest.fail(f"the test left tasks running\n{report.format()}", pytrace=False)

    return checked


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    check = item.stash.get(_CHECK, None)
    if check is None:
        return (yield)
    del item.stash[_CHECK]
    try:
        result = yield
    finally:
        if check in _running:
            _running.remove(check)
        report = check.finish_sync()
    if not report.ok:
        pytest.fail(f"the test left threads running\n{report.format()}", pytrace=False)
    return result


# -- clean_shutdown -------------------------------------------------------------------


@asynccontextmanager
async def _clean_shutdown(supervisor: S) -> AsyncIterator[S]:
    try:
        async with supervisor:
            yield supervisor
    except BaseException as exc:
        report = getattr(supervisor, "report", None)
        if report is not None and not report.ok:
            _add_note(exc, f"shutdown report:\n{report.format()}")  # the test's own error stays first
        raise
    report = supervisor.report
    if not report.ok:
        pytest.fail(f"unclean shutdown\n{report.format()}", pytrace=False)


def _add_note(exc: BaseException, note: str) -> None:
    """PEP 678 notes; on Python 3.10 the ``__notes__`` list that pytest and the
    ``exceptiongroup`` backport print the same way."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:  # pragma: no cover - Python 3.10 only
        exc.__notes__ = [*getattr(exc, "__notes__", ()), note]


@pytest.fixture
def clean_shutdown() -> Callable[[S], AbstractAsyncContextManager[S]]:
    """``async with clean_shutdown(sup) as sup:`` fails the test unless ``sup.report.ok``.

    The supervisor starts on enter (a startup failure raises ``StartupError``), closes
    with its production deadlines on exit, and its report must show no errors, no
    overruns and no leaks.
    """
    return _clean_shutdown
