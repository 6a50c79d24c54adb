"""Secrets never reach the report, the leak report or health views, and a leak check
cancelled while settling leaves no hook behind (see "Mutation testing" in docs/testing.md).
"""

from __future__ import annotations

import json
import threading

import anyio
import pytest

from lifecycle import Health, LeakCheck, RestartPolicy, Service, Supervisor
from lifecycle.redact import scrub

SECRET = "s3cr3t-pa55word"
LONGER = SECRET + "-and-more"


class Secretive(Service):
    """Knows a password and a longer token that contains it."""

    def secrets(self) -> list[str]:
        return [SECRET, LONGER]


def test_a_secret_inside_a_longer_secret_is_masked_whole() -> None:
    assert scrub("token=abcd-efgh used", ["abcd", "abcd-efgh"]) == "token=*** used"
    assert scrub("token=abcd-efgh used", ["abcd-efgh", "abcd"]) == "token=*** used"


@pytest.mark.anyio
async def test_a_failure_quoting_secrets_is_recorded_with_every_secret_masked() -> None:
    class Failing(Secretive):
        restart = RestartPolicy(on="never")

        async def run(self) -> None:
            raise PermissionError(f"login refused for token {LONGER}")

    with anyio.fail_after(20):
        report = await Supervisor([Failing()], leak_check=False).serve(handle_signals=False)
    [failure] = report.failures
    assert "PermissionError" in failure.traceback and "***" in failure.traceback
    for text in (failure.traceback, failure.error, report.format(), json.dumps(report.to_dict())):
        assert SECRET not in text and "and-more" not in text


@pytest.mark.anyio
async def test_a_health_reason_quoting_a_secret_is_masked() -> None:
    class Unhealthy(Secretive):
        check_interval = 0.01
        grace_period = 0.0
        failure_threshold = 1000

        def __init__(self) -> None:
            super().__init__()
            self.checks = 0
            self.checked = anyio.Event()

        async def check(self) -> Health:
            self.checks += 1
            if self.checks == 2:  # the first verdict is recorded by now
                self.checked.set()
            return Health(False, f"login with {SECRET} refused")

    svc = Unhealthy()
    with anyio.fail_after(20):
        async with Supervisor([svc], leak_check=False) as sup:
            await svc.checked.wait()
            view = sup.health()["services"]["unhealthy"]
    assert view["healthy"] is False and view["reason"] == "login with *** refused"


@pytest.mark.anyio
async def test_the_leak_report_is_scrubbed_with_the_services_secrets() -> None:
    release = threading.Event()

    class Leaky(Secretive):
        async def start(self) -> None:
            threading.Thread(target=release.wait, args=(60,),
                             name=f"conn postgres://app:{SECRET}@db").start()

    sup = Supervisor([Leaky()], leak_check=LeakCheck(settle=0.1))
    try:
        with anyio.fail_after(20):
            async with sup:
                pass
    finally:
        release.set()
    leaks = sup.report.leaks
    assert leaks is not None and [t.name for t in leaks.threads] == ["conn postgres://app:***@db"]
    for text in (leaks.format(), sup.report.format(), json.dumps(sup.report.to_dict())):
        assert SECRET not in text


@pytest.mark.anyio
@pytest.mark.allow_leaks  # this test checks the hooks itself
async def test_a_leak_check_cancelled_while_settling_restores_the_hooks() -> None:
    original_start, original_hook = threading.Thread.start, threading.excepthook
    release = threading.Event()
    check = LeakCheck(settle=30.0)
    check.begin()
    worker = threading.Thread(target=release.wait, args=(60,), name="slow")
    worker.start()
    try:
        with anyio.move_on_after(0.2):
            await check.finish()
        assert threading.Thread.start is original_start
        assert threading.excepthook is original_hook
        check.begin()  # usable again: the cancelled finish() ended the check
        assert (await check.finish(settle=0)).ok
    finally:
        release.set()
        worker.join(5)
