"""The sampled mutation test: realistic one-line changes to the core and the writer.

``python -m tests.mutation_sample [--before] [--only ID ...]`` applies each mutant below
to the source in place (restoring it afterwards, whatever happens), runs the tests that
guard its module, and prints the score per module as a Markdown table. ``--before``
leaves out the ``tests/test_promises_*.py`` files, which were written to kill the
survivors of the first sample: the figures with and without them are the "before" and
"after" of docs/testing.md. A mutant is killed when the tests fail (or hang past
``TIMEOUT`` seconds); one that leaves them green survives.

Each mutant is a ``(old, new)`` replacement that must match exactly once, so a mutant
whose line was changed by later work fails loudly instead of silently testing nothing.
Whole-module runs with a mutation tool (mutmut, cosmic-ray) generate far more mutants
and take hours; this sample is the quick, reviewable measure, one minute per mutant.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300

CORE = ["tests/test_start.py", "tests/test_close.py", "tests/test_supervision.py",
        "tests/test_signals.py", "tests/test_supervisor_leaks.py", "tests/test_db_fallback.py"]
PROMISES_CORE = ["tests/test_promises_health.py", "tests/test_promises_forced.py",
                 "tests/test_promises_close.py", "tests/test_promises_secrets.py"]
LEAKS = ["tests/test_leaks.py", "tests/test_supervisor_leaks.py", "tests/test_close.py"]
REDACT = ["tests/test_redact.py", "tests/test_redact_dsn.py", "tests/test_redact_surfaces.py",
          "tests/test_supervisor_leaks.py", "tests/test_leaks.py"]
WRITER = ["tests/test_influx.py", "tests/test_influx_buffer.py", "tests/test_influx_units.py",
          "tests/test_promises_replay.py"]

#: module -> the tests that guard it (the promises files first: they fail fastest)
GUARDS = {
    "lifecycle/supervisor.py": PROMISES_CORE + CORE,
    "lifecycle/_runtime.py": PROMISES_CORE + CORE,
    "lifecycle/_starting.py": PROMISES_CORE + CORE,
    "lifecycle/_closing.py": PROMISES_CORE + CORE,
    "lifecycle/_supervised.py": PROMISES_CORE + CORE,
    "lifecycle/_monitor.py": ["tests/test_promises_health.py", "tests/test_supervision.py"],
    "lifecycle/policy.py": ["tests/test_promises_health.py", "tests/test_promises_close.py",
                            "tests/test_supervision.py", "tests/test_start.py"],
    "lifecycle/_work.py": PROMISES_CORE + CORE,
    "lifecycle/_bounded.py": PROMISES_CORE + CORE,
    "lifecycle/leaks.py": ["tests/test_promises_secrets.py", "tests/test_promises_close.py",
                           *LEAKS],
    "lifecycle/redact.py": ["tests/test_promises_secrets.py", *REDACT],
    "adapters/influx/_replay.py": WRITER,
    "adapters/influx/_buffer.py": WRITER,
}


@dataclass(frozen=True)
class Mutant:
    id: str
    module: str
    what: str  # the promise it breaks
    old: str
    new: str


MUTANTS = [
    # --- the survivors of the first sample (issue 23) -----------------------------------
    Mutant("grace-after-recovery", "lifecycle/_monitor.py", "no grace period after a recovery",
           "            self.failures = 0\n            grace_until = now() + svc.grace_period\n",
           "            self.failures = 0\n"),
    Mutant("failures-reset", "lifecycle/_monitor.py",
           "the failure counter not reset by a healthy check",
           "        self.failures = 0\n        if self.in_incident:\n            at = now()",
           "        if self.in_incident:\n            at = now()"),
    Mutant("failed-recover-stops", "lifecycle/_monitor.py",
           "a failed recover() stops health monitoring for good",
           'if outcome == Outcome.OK or method == "recover":', "if outcome == Outcome.OK:"),
    Mutant("force-hosts", "lifecycle/supervisor.py",
           "a forced shutdown does not interrupt the task hosts",
           "                rt.host.interrupt()\n", "                pass\n"),
    Mutant("force-drain", "lifecycle/_closing.py", "the drain is not cut short when forced",
           "            await sup._forced.wait()\n", "            await anyio.sleep_forever()\n"),
    Mutant("force-threads", "lifecycle/_work.py", "thread joins ignore a forced shutdown",
           "if remaining <= 0 or interrupted():", "if remaining <= 0:"),
    Mutant("leaks-redacted", "lifecycle/_closing.py",
           "the leak report not redacted with the services' secrets",
           "sup.report.leaks = leaks.redact(sup._secrets) if sup._secrets else leaks",
           "sup.report.leaks = leaks"),
    Mutant("scrub-longest-first", "lifecycle/redact.py",
           "scrub replaces shorter secret forms first (partial masking)",
           "    for form in sorted(forms, key=len, reverse=True):",
           "    for form in sorted(forms, key=len):"),
    Mutant("supervisor-scrub", "lifecycle/supervisor.py", "Supervisor.scrub is a no-op",
           "return redact.scrub(text, self._secrets) if text else text", "return text"),
    Mutant("fallback-discard", "lifecycle/_runtime.py",
           "a failed Fallback candidate's spawned tasks are not closed",
           "            await self.host.close(0.0, ABANDON_GRACE)\n            self.host = None\n",
           "            self.host = None\n"),
    Mutant("cancelled-waiter", "lifecycle/_bounded.py",
           "a cancelled waiter does not cancel its detached job",
           "            job.cancel()  # the waiter itself was cancelled", "            pass  #"),
    Mutant("backoff-cap", "lifecycle/policy.py", "the restart backoff cap dropped",
           "base = min(cap, first * (2.0 ** min(attempt, 62)))",
           "base = first * (2.0 ** min(attempt, 62))"),
    Mutant("backoff-first", "lifecycle/_supervised.py", "the first restart uses the doubled backoff",
           "delay = policy.delay(streak - 1)", "delay = policy.delay(streak)"),
    Mutant("monitors-first", "lifecycle/_closing.py",
           "health monitors closed after the stop stages, not before",
           "            if rt.monitor_host is not None:\n"
           "                tg.start_soon(rt.close_monitor)\n",
           "            pass\n"),
    Mutant("zero-budget", "lifecycle/_runtime.py", "a stage runs with a spent budget",
           "            if forced() or budget <= 0:", "            if forced():"),
    Mutant("settle-cap", "lifecycle/_closing.py", "the leak check's settle cap dropped",
           "settle = min(float(sup._leaks.settle), max(left, 0.0), 1.0)",
           "settle = min(float(sup._leaks.settle), max(left, 0.0))"),
    Mutant("finish-release", "lifecycle/leaks.py",
           "a cancelled finish() does not release the hooks",
           "            self._release()  # cancelled while settling", "            pass  #"),
    Mutant("replay-release-held", "adapters/influx/_replay.py",
           "rows held by an aborted replay stay counted against the caps",
           "            for batch in held.values():\n                self._buf.release(batch)\n",
           "            pass\n"),
    Mutant("replay-stop-on-failure", "adapters/influx/_replay.py",
           "a failed replay delivery neither stops the replay nor backs off",
           "                if not done:\n                    self._failed = True\n",
           "                if not done:\n                    pass\n"),
    Mutant("replay-first-read-sqlite", "adapters/influx/_replay.py",
           "an sqlite3.Error on the first replay read is not caught",
           "            first = await self._read(0)\n        except (OSError, sqlite3.Error) as exc:",
           "            first = await self._read(0)\n        except OSError as exc:"),
    # --- more of the same modules ---------------------------------------------------------
    Mutant("abandoned-as-timeout", "lifecycle/_bounded.py",
           "a job that ignores cancellation reported as a timeout, not abandoned",
           "return Result(Outcome.ABANDONED, elapsed, job.error, stack,",
           "return Result(Outcome.TIMEOUT, elapsed, job.error, stack,"),
    Mutant("host-cancel", "lifecycle/_work.py", "tasks still running at the deadline not cancelled",
           "        for task in list(self._running.values()):\n            task.cancel()\n",
           ""),
    Mutant("stage-deadline-budget", "lifecycle/_runtime.py",
           "a stage's deadline not cut to the remaining budget",
           "wait = min(stage.timeout, budget)", "wait = stage.timeout"),
    Mutant("restart-budget", "lifecycle/_supervised.py", "the restart budget never enforced",
           "        if why is not None:\n            rt.escalate(where, error if failed",
           "        if False:\n            rt.escalate(where, error if failed"),
    Mutant("threshold-off-by-one", "lifecycle/_monitor.py", "one failure more than the threshold",
           "if self.failures < svc.failure_threshold:", "if self.failures <= svc.failure_threshold:"),
    Mutant("recovery-budget", "lifecycle/_monitor.py", "recoveries not drawn from the budget",
           "        elif not rt.budget.try_take(now()):", "        elif False:"),
    Mutant("close-order", "lifecycle/_closing.py",
           "a service stopped before the services that depend on it",
           "if d in stopped and not stopped[d].is_set()]", "if False]"),
    Mutant("start-blocked", "lifecycle/_starting.py", "a service started after its dependency failed",
           "blocked = [d for d in rt.declared.depends_on if not sup._runtimes[d].started]",
           "blocked: list[str] = []"),
    Mutant("leaks-snapshot", "lifecycle/leaks.py", "threads alive at the snapshot reported",
           "if t not in snapshot and t is not me", "if t is not me"),
    Mutant("short-secret-words", "lifecycle/redact.py", "short secrets masked inside words",
           "        if len(form) >= SHORT_SECRET:", "        if True:"),
    Mutant("secret-forms", "lifecycle/redact.py", "the URL-encoded form of a secret not masked",
           "forms = {secret, quote(secret, safe=\"\"), quote_plus(secret, safe=\"\")}",
           "forms = {secret}"),
    Mutant("mask-url-password", "lifecycle/redact.py", "a URL's password not masked",
           'netloc = f"{user}:{MASK}@{hostport}" if sep else netloc', "netloc = netloc"),
    Mutant("fitting-points", "adapters/influx/_buffer.py", "drop_newest ignores the point cap",
           "if keep >= room or used > self.max_bytes:", "if used > self.max_bytes:"),
    Mutant("over-cap-held", "adapters/influx/_buffer.py", "what is held not counted against the caps",
           "return (self.points + self.held_points + points > self.max_points",
           "return (self.points + points > self.max_points"),
    Mutant("replay-hold", "adapters/influx/_replay.py", "rows being replayed not counted",
           "                    self._buf.hold(held[chunk.id])\n", ""),
]


def run(mutant: Mutant, before: bool) -> tuple[bool, float]:
    """Apply ``mutant``, run its module's guards; True when they fail (killed)."""
    path = ROOT / mutant.module
    source = path.read_text()
    if source.count(mutant.old) != 1:
        raise SystemExit(f"mutant {mutant.id}: its line is not found exactly once in "
                         f"{mutant.module}; re-locate it")
    tests = [t for t in GUARDS[mutant.module] if not (before and "test_promises_" in t)]
    began = time.monotonic()
    try:
        path.write_text(source.replace(mutant.old, mutant.new))
        try:
            proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p",
                                   "no:cacheprovider", *tests], cwd=ROOT, timeout=TIMEOUT,
                                  capture_output=True)
            killed = proc.returncode != 0
        except subprocess.TimeoutExpired:
            killed = True
    finally:
        path.write_text(source)
    return killed, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", action="store_true", help="without tests/test_promises_*")
    parser.add_argument("--only", nargs="*", default=None, help="mutant ids")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.only is None or m.id in args.only]
    results: dict[str, list[tuple[Mutant, bool]]] = {}
    for mutant in chosen:
        killed, seconds = run(mutant, args.before)
        print(f"{'killed  ' if killed else 'SURVIVED'} {mutant.id} ({seconds:.0f}s)", flush=True)
        results.setdefault(mutant.module, []).append((mutant, killed))
    print("\n| module | killed | score | survivors |\n| --- | --- | --- | --- |")
    total = dead = 0
    for module, rows in results.items():
        k = sum(killed for _, killed in rows)
        total, dead = total + len(rows), dead + k
        alive = ", ".join(m.id for m, killed in rows if not killed) or "\u2013"
        print(f"| `{module}` | {k}/{len(rows)} | {k / len(rows):.0%} | {alive} |")
    print(f"| **all** | {dead}/{total} | {dead / total:.0%} | |")


if __name__ == "__main__":
    main()
