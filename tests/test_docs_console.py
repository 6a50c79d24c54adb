"""``Supervisor.run()`` in a fresh interpreter shows its report without any logging set up."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

APP = textwrap.dedent("""
    import logging, sys
    from lifecycle import Service, Supervisor

    class Batch(Service):
        async def run(self):  # a required run() that returns ends the app: exit code 0
            pass

    {configure}
    report = Supervisor([Batch()]).run(backend=sys.argv[1])
    print("handlers left:", logging.getLogger("lifecycle").handlers,
          logging.getLevelName(logging.getLogger("lifecycle").level))
    sys.exit(report.exit_code)
""")


def _run(backend: str, configure: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", APP.format(configure=configure), backend],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_plain_run_in_a_fresh_interpreter_prints_the_events_and_the_report(backend: str) -> None:
    proc = _run(backend)
    assert proc.returncode == 0, proc.stderr
    assert "INFO    lifecycle.events: batch: started in" in proc.stderr
    assert "lifecycle report for 'app': exit code 0 (ok)" in proc.stderr
    # the console handler belongs to the run: afterwards the logger is as it was
    assert "handlers left: [] NOTSET" in proc.stdout


def test_configured_logging_turns_the_console_handler_off() -> None:
    proc = _run("asyncio", "logging.basicConfig(level=logging.WARNING)")
    assert proc.returncode == 0, proc.stderr
    assert "lifecycle report" not in proc.stderr and "started in" not in proc.stderr


def test_a_null_handler_on_the_root_logger_silences_the_run() -> None:
    proc = _run("asyncio", "logging.getLogger().addHandler(logging.NullHandler())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
