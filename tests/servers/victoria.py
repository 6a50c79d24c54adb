"""A real VictoriaMetrics server for tests: accepts InfluxDB `/api/v2/write`, queried back.

Behaviours the helpers account for (checked against 1.79):
- a series is named `measurement_field` and keeps millisecond timestamps, so give test
  points distinct milliseconds; two samples with the same timestamp are both stored (no
  dedup), `count()` counts distinct timestamps like InfluxDB would (a replayed point
  overwrites itself), `raw_count()` counts what is stored;
- written rows become searchable after `/internal/force_flush`, but a brand-new series only
  shows up in `/api/v1/export` about 1 s after it was written (10 s without a flush), while
  `/api/v1/series` lists it at once: `export()` and `count()` flush, ask `/api/v1/series`
  which series exist, then poll the export until all of them appear;
- a query that found nothing may be cached, so give each test its own label value;
- searchable is not durable: a SIGKILL loses about the last 5 s of writes, even flushed
  ones; `persist()` writes them to disk first (a graceful stop loses nothing).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.servers import (
    LOOPBACK,
    START_TIMEOUT,
    STOP_TIMEOUT,
    ManagedServer,
    ServerError,
    ServerUnavailable,
    die_with_parent,
    find_executable,
    free_port,
    freeze,
    log_tail,
    make_scratch,
    thaw,
    track,
    wait_until,
)

INSTALL_HINT = (
    "victoria-metrics binary not found: apt-get install victoria-metrics "
    "(or run ./dev test, which installs it), or set LIFECYCLE_VM_BIN to the binary"
)
HTTP_TIMEOUT = 10.0
VISIBLE_TIMEOUT = 10.0  # how long count() waits for listed series to reach the export
_FAR_FUTURE_S = 2 * 86400  # export/series end bound: VM rejects samples beyond now + 2 days

# Flags that matter for tests: no response cache and no latency offset (a query sees what
# was just written), a retention long enough for back-dated points, quick graceful
# shutdown even with idle keep-alive clients, modest memory.
_FLAGS = (
    "-search.disableCache",
    "-search.latencyOffset=0s",
    "-retentionPeriod=100y",
    "-http.maxGracefulShutdownDuration=1s",
    "-memory.allowedBytes=256MB",
    "-loggerLevel=INFO",
)


def find_binary() -> Path | None:
    """$LIFECYCLE_VM_BIN, else `victoria-metrics` on PATH, else /usr/bin/victoria-metrics."""
    return find_executable("LIFECYCLE_VM_BIN", "victoria-metrics")


def selector(series: str, labels: dict[str, str]) -> str:
    """`series{k="v",...}` with label values quoted for MetricsQL."""
    if not labels:
        return series
    quoted = ",".join(f'{key}="{_escape(str(value))}"' for key, value in sorted(labels.items()))
    return f"{series}{{{quoted}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class VictoriaMetrics(ManagedServer):
    _PORT_TAKEN = "address already in use"
    """One victoria-metrics process on 127.0.0.1:`port`; port and storage survive
    stop/kill/restart. The query helpers are synchronous (local HTTP, bounded by timeouts)."""

    host = LOOPBACK

    def __init__(self, binary: Path | None = None, *, extra_args: Iterable[str] = ()) -> None:
        found = binary or find_binary()
        if found is None:
            raise ServerUnavailable(INSTALL_HINT)
        self.binary = found
        self.extra_args = tuple(extra_args)
        self.port = free_port()
        self.dir = make_scratch("vm")
        self.data_dir = self.dir / "data"
        self.log_path = self.dir / "victoria-metrics.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._stalled = False
        track(self, self._emergency_close)

    def __repr__(self) -> str:
        return f"<VictoriaMetrics {self.url} pid={self.pid} stalled={self._stalled}>"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def write_url(self) -> str:
        """The InfluxDB v2 write endpoint (org, bucket and token are accepted and ignored)."""
        return f"{self.url}/api/v2/write"

    @property
    def is_stalled(self) -> bool:
        return self._stalled

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start and wait until `/health` answers OK."""
        if self.running:
            return
        self._spawn_on_a_free_port(timeout)

    def _spawn(self, timeout: float) -> None:
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [str(self.binary), f"-httpListenAddr={self.host}:{self.port}",
                 f"-storageDataPath={self.data_dir}", *_FLAGS, *self.extra_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                preexec_fn=die_with_parent(),
            )
        proc = self._proc

        def healthy() -> bool:
            if proc.poll() is not None:
                raise ServerError(f"victoria-metrics exited ({proc.returncode}):\n"
                                  f"{log_tail(self.log_path)}")
            return self.healthy()

        try:
            wait_until(healthy, timeout, f"victoria-metrics on port {self.port}")
        except ServerError:
            self.kill()
            raise

    def healthy(self, timeout: float = 1.0) -> bool:
        try:
            return self._get("/health", timeout=timeout).strip() == "OK"
        except (OSError, ServerError):
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful stop (SIGINT: VM flushes its buffers); SIGKILL after `timeout`."""
        proc = self._proc
        if proc is None:
            return
        self.resume()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash would: what was written in the last ~5 s is lost unless
        `persist()` ran after it (a graceful `stop()` keeps everything)."""
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        self._stalled = False
        self._proc = None

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop (if running) and start again: same port, same storage."""
        self.stop(timeout)
        self.start(timeout)

    def stall(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing answers."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise ServerError("victoria-metrics is not running")
        freeze([proc.pid])
        self._stalled = True

    def resume(self) -> None:
        proc = self._proc
        if self._stalled and proc is not None:
            thaw([proc.pid])
        self._stalled = False


    # --- data -----------------------------------------------------------------------------

    def _get(
        self, path: str, query: dict[str, str] | None = None, timeout: float = HTTP_TIMEOUT
    ) -> str:
        url = f"{self.url}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return str(response.read().decode())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise ServerError(f"GET {path} -> {exc.code}: {body.strip()}") from None

    def write(self, lines: str | Iterable[str], precision: str = "ms") -> None:
        """Write InfluxDB line protocol (to seed data; the code under test uses its client)."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        request = urllib.request.Request(
            f"{self.write_url}?precision={precision}", data=body.encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            if response.status != 204:
                raise ServerError(f"write -> {response.status}")

    def flush(self) -> None:
        """Make everything written so far searchable (new series: see the module doc)."""
        self._get("/internal/force_flush")

    def persist(self) -> None:
        """Make everything written so far survive kill(): searchable data lives in memory
        for about 5 s before VM writes it to disk; creating a snapshot writes it now (the
        snapshot itself is deleted again)."""
        self.flush()
        name = json.loads(self._get("/snapshot/create"))["snapshot"]
        self._get("/snapshot/delete", {"snapshot": name})

    def _range(self) -> dict[str, str]:
        return {"start": "0", "end": str(int(time.time()) + _FAR_FUTURE_S)}

    def _export(self, match: str) -> list[dict[str, Any]]:
        text = self._get("/api/v1/export", {"match[]": match, **self._range()})
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def series(self, match: str) -> list[dict[str, str]]:
        """Label sets of the series matching a selector (visible at once after a flush)."""
        text = self._get("/api/v1/series", {"match[]": match, **self._range()})
        data: list[dict[str, str]] = json.loads(text)["data"]
        return data

    def export(self, match: str) -> list[dict[str, Any]]:
        """Everything written so far for a series selector (`/api/v1/export`, all time):
        one dict per series with `metric` (labels incl. `__name__`), `values` and
        `timestamps` (ms). Flushes, then waits until every series the index lists is in
        the export (new series lag behind, see the module doc)."""
        self.flush()
        expected = {frozenset(labels.items()) for labels in self.series(match)}
        deadline = time.monotonic() + VISIBLE_TIMEOUT
        while True:
            rows = self._export(match)
            seen = {frozenset(row["metric"].items()) for row in rows}
            if expected <= seen:
                return rows
            if time.monotonic() >= deadline:
                missing = [dict(labels) for labels in expected - seen]
                raise ServerError(f"series not visible after {VISIBLE_TIMEOUT} s: {missing}")
            time.sleep(0.05)

    def count(self, series: str, /, **labels: str) -> int:
        """Points stored for `series` (e.g. "cpu_value") with these labels, across all
        matching series, counting each distinct millisecond once (InfluxDB semantics)."""
        rows = self.export(selector(series, labels))
        return sum(len(set(row["timestamps"])) for row in rows)

    def raw_count(self, series: str, /, **labels: str) -> int:
        """Samples stored, duplicates (same series and millisecond) included."""
        rows = self.export(selector(series, labels))
        return sum(len(row["timestamps"]) for row in rows)

    def wait_count(
        self, series: str, expected: int, /, *, timeout: float = 15.0, **labels: str
    ) -> int:
        """Poll `count()` until it reaches `expected` or `timeout` passes; returns the last
        count, so `assert vm.wait_count("cpu_value", 5, test=tag) == 5` fails on too few
        and too many. (A label named `timeout` cannot be given here; use count().)"""
        deadline = time.monotonic() + timeout
        while True:
            found = self.count(series, **labels)
            if found >= expected or time.monotonic() >= deadline:
                return found
            time.sleep(0.1)
