"""Rolling restart behind haproxy: two app processes behind a real haproxy that checks
``/readyz`` (every 100 ms, two failures take a server out; no retries, like a balancer that
does not retry), steady GETs through it, and each process in turn gets SIGTERM, exits, is
started again and waits to be back in rotation; round after round until the requests are
sent. Run with ``drain_delay`` (the app keeps serving while haproxy takes it out) and,
as the control, without. Figure: seconds from a new process's spawn to haproxy marking it
UP (the interpreter's start, imports, the app's startup, one health check); the note has
the failed requests and the exit codes (0 expected: one SIGTERM never gives 143).

``python -m benchmarks.rolling_restart [--requests N] [--rate R] [--drain S ...] [SERVER ...]``
runs it alone; tests/test_web_rolling.py is the short version in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import Result, Size

NAME = "rolling_restart"
TITLE = "Rolling restart behind haproxy: failed requests, time back in rotation"
SUBJECTS = {
    "uvicorn / hypercorn": "`ASGIService(starlette_app, port=P, server=...)`: a Starlette app "
                           "(`GET /` answers after 2 ms) under `Supervisor(drain_delay=...)`.",
    "aiohttp": "`AioHTTPService(make_app, port=P)`: the same routes on aiohttp.web.",
}
DRAIN = 2.0  # seconds: well over haproxy's 2 x 100 ms to take a server out
RATE = 400.0  # requests per second through haproxy

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "apps" / "web_server_app.py"
SERVERS = ("uvicorn", "hypercorn", "aiohttp")
READY_TIMEOUT = 60.0  # a loaded 2-core machine imports slowly
EXIT_TIMEOUT = 60.0


class AppProcess:
    """One app process (``web_server_app.py``) with its stdout read by a thread."""

    def __init__(self, server: str, port: int, drain: float) -> None:
        self.args = [sys.executable, str(APP), server, str(port), str(drain)]
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()

    def start(self) -> None:
        self.lines = queue.Queue()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=ROOT)
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()
        self.wait_for("READY", READY_TIMEOUT)

    @staticmethod
    def _read(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put("")  # end of output

    def wait_for(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise RuntimeError(f"no {prefix!r} from {self.args} within {timeout:g}s") from None
            if line.startswith(prefix):
                return line
            if line == "" and self.proc is not None and self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise RuntimeError(f"{self.args} exited {self.proc.returncode}: {err[-2000:]}")

    def terminate(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, dict[str, Any]]:
        """Send ``sig``; wait for the exit; (exit code, the report as a dict)."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(EXIT_TIMEOUT)
        report: dict[str, Any] = {}
        with contextlib.suppress(queue.Empty):
            while True:
                line = self.lines.get(timeout=5)
                if line.startswith("{"):
                    report = json.loads(line)
                if line == "":
                    break
        self.close()
        return code, report

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


@dataclass
class Load:
    """Steady GETs through the balancer: ``rate`` per second over ``workers`` connections."""

    url: str
    rate: float
    workers: int = 8
    sent: int = 0
    failed: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    seconds: float = 0.0  # how long the load ran

    def run(self) -> None:
        began = time.monotonic()
        asyncio.run(self._main())
        self.seconds = time.monotonic() - began

    async def _main(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._worker(session, i) for i in range(self.workers)))

    async def _worker(self, session: Any, index: int) -> None:
        import aiohttp

        period = self.workers / self.rate
        next_at = time.monotonic() + period * index / self.workers
        while not self.stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at = max(next_at + period, time.monotonic() - period)
            self.sent += 1
            try:
                async with session.get(self.url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        self._fail(f"HTTP {resp.status}")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self._fail(type(exc).__name__)

    def _fail(self, kind: str) -> None:
        self.failed += 1
        self.failures[kind] += 1


@dataclass
class RollingResult:
    server: str
    drain: float
    requests: int
    failed: int
    failures: dict[str, int]
    restarts: int
    exit_codes: list[int]
    back_in_rotation: list[float]  # seconds from a new process's spawn to haproxy's UP
    stop_seconds: list[float]  # seconds from SIGTERM to the process's exit
    reports_ok: bool
    load_seconds: float

    def row(self) -> str:
        back = max(self.back_in_rotation) if self.back_in_rotation else float("nan")
        mean = sum(self.back_in_rotation) / max(len(self.back_in_rotation), 1)
        return (f"| {self.server} | {self.drain:g} s | {self.requests:,} | {self.failed:,} | "
                f"{self.restarts} | {mean:.2f} s (max {back:.2f} s) | "
                f"{sorted(set(self.exit_codes))} |")


def rolling_restart(server: str, *, drain: float, min_requests: int, rate: float,
                    cycles: int = 1, workers: int = 8,
                    balancer_factory: Callable[[dict[str, int]], Any] | None = None) -> RollingResult:
    """Two processes behind haproxy; restart each in turn (``cycles`` rounds at least, and
    until ``min_requests`` were sent) under steady load. ``balancer_factory(ports)`` returns a
    started haproxy (the tests' fixture); by default one is started and closed here."""
    sys.path.insert(0, str(ROOT))
    from tests.servers import free_port
    from tests.servers.haproxy import HAProxy

    ports = {"a": free_port(), "b": free_port()}
    apps = {name: AppProcess(server, port, drain) for name, port in ports.items()}
    codes: list[int] = []
    back: list[float] = []
    stops: list[float] = []
    reports_ok = True
    restarts = 0
    with contextlib.ExitStack() as stack:
        if balancer_factory is None:
            balancer = stack.enter_context(HAProxy(ports))
        else:
            balancer = balancer_factory(ports)
        try:
            for app in apps.values():
                app.start()
            balancer.wait_status(list(apps), "UP")
            load = Load(balancer.url + "/", rate, workers)
            loader = threading.Thread(target=load.run, name="rolling-load", daemon=True)
            loader.start()
            try:
                round_ = 0
                while round_ < cycles or load.sent < min_requests:
                    round_ += 1
                    for name, app in apps.items():
                        t0 = time.monotonic()
                        code, report = app.terminate()
                        stops.append(time.monotonic() - t0)
                        codes.append(code)
                        reports_ok = reports_ok and bool(report.get("ok"))
                        t1 = time.monotonic()
                        app.start()
                        balancer.wait_status([name], "UP")
                        back.append(time.monotonic() - t1)
                        restarts += 1
            finally:
                load.stop.set()
                loader.join(60)
        finally:
            for app in apps.values():
                app.close()
    return RollingResult(server, drain, load.sent, load.failed, dict(load.failures), restarts,
                         codes, back, stops, reports_ok, load.seconds)


def _sizes(size: Size) -> tuple[tuple[str, ...], int]:
    """(servers, requests with a drain); the control without a drain sends a quarter."""
    return (SERVERS, 20_000) if size == "full" else (("uvicorn",), 150)


def run(size: Size, balancer_factory: Callable[[dict[str, int]], Any] | None = None) -> list[Result]:
    """``balancer_factory``: the tests' ``haproxy`` fixture (default: start one per run)."""
    servers, requests = _sizes(size)
    results = []
    for drain in (DRAIN, 0.0) if size == "full" else (DRAIN,):
        for server in servers:
            r = rolling_restart(server, drain=drain, rate=RATE,
                                min_requests=requests if drain else requests // 4,
                                balancer_factory=balancer_factory)
            back = r.back_in_rotation
            note = (f"{r.requests:,} requests ({r.requests / r.load_seconds:.0f}/s), **{r.failed:,} failed**"
                    + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(r.failures.items()))})"
                       if r.failures else "")
                    + f", {r.restarts} restarts, SIGTERM to exit {statistics.median(r.stop_seconds):.2f} s"
                    f" (median), exit codes {sorted(set(r.exit_codes))}")
            results.append(Result(
                NAME, f"{server}, drain_delay={drain:g}s", statistics.median(back), "s",
                goal="0 failed requests, exit 0" if drain else "",
                met=(r.failed == 0 and set(r.exit_codes) == {0}) if drain else None,
                best=min(back), samples=len(back), note=note,
                extra={"requests": r.requests, "failed": r.failed}))
    return results


HEADER = ("| server | drain_delay | requests | failed | restarts | back in rotation (mean, max) "
          "| exit codes |\n|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rolling_restart")
    parser.add_argument("servers", nargs="*", metavar="SERVER",
                        help=f"any of {', '.join(SERVERS)} (default: all)")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--drain", type=float, nargs="+", default=[2.0, 0.0])
    args = parser.parse_args(argv)
    servers = args.servers or list(SERVERS)
    unknown = set(servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    print(HEADER)
    for drain in args.drain:
        for server in servers:
            result = rolling_restart(server, drain=drain, rate=args.rate,
                                     min_requests=args.requests if drain else args.requests // 4)
            print(result.row(), flush=True)
            if result.failures:
                print(f"<!-- {server} drain {drain:g}: {result.failures} -->", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
