"""A real Prometheus server for tests: scrapes one app's ``/metrics``, queried over its API.

The app's port is reserved first (``target_port``): the scrape config must name it before
Prometheus starts, and the app binds it afterwards. Prometheus scrapes every second;
:meth:`Prometheus.wait_for` polls ``/api/v1/query`` until a query returns what the test
expects (a scrape only lands after the next interval).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.servers import (
    LOOPBACK,
    START_TIMEOUT,
    ManagedServer,
    ServerError,
    ServerUnavailable,
    die_with_parent,
    find_executable,
    free_port,
    log_tail,
    make_scratch,
    track,
    wait_until,
)

INSTALL_HINT = ("prometheus binary not found: apt-get install prometheus (or run ./dev test, "
                "which installs it), or set LIFECYCLE_PROMETHEUS_BIN to the binary")
SCRAPE_INTERVAL = "1s"


def find_binary() -> Path | None:
    """$LIFECYCLE_PROMETHEUS_BIN, else `prometheus` on PATH, else /usr/bin/prometheus."""
    return find_executable("LIFECYCLE_PROMETHEUS_BIN", "prometheus")


class Prometheus(ManagedServer):
    """One prometheus process on 127.0.0.1:``port`` scraping ``127.0.0.1:target_port``."""

    _PORT_TAKEN = "address already in use"
    host = LOOPBACK

    def __init__(self, binary: Path | None = None, *, job: str = "app") -> None:
        found = binary or find_binary()
        if found is None:
            raise ServerUnavailable(INSTALL_HINT)
        self.binary = found
        self.job = job
        self.port = free_port()
        self.target_port = free_port()
        self.dir = make_scratch("prometheus")
        self.log_path = self.dir / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None
        track(self, self._emergency_close)

    def __repr__(self) -> str:
        return f"<Prometheus {self.url} scraping :{self.target_port} pid={self.pid}>"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if not self.running:
            self._spawn_on_a_free_port(timeout)

    def _spawn(self, timeout: float) -> None:
        config = self.dir / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {SCRAPE_INTERVAL}\n"
            f"  scrape_timeout: {SCRAPE_INTERVAL}\n"
            "scrape_configs:\n"
            f"  - job_name: {self.job}\n"
            f"    static_configs:\n      - targets: ['{self.host}:{self.target_port}']\n")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [str(self.binary), f"--config.file={config}",
                 f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address={self.host}:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                preexec_fn=die_with_parent())
        proc = self._proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise ServerError(f"prometheus exited ({proc.returncode}):\n"
                                  f"{log_tail(self.log_path)}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        try:
            wait_until(ready, timeout, f"prometheus on port {self.port}")
        except ServerError:
            self.close()
            raise

    def query(self, promql: str) -> list[dict[str, Any]]:
        """``/api/v1/query``: the instant vector's samples (``metric`` labels, ``value``)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10.0) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise ServerError(f"prometheus query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The single sample's value of ``promql``, or None while there is none."""
        found = self.query(promql)
        return float(found[0]["value"][1]) if len(found) == 1 else None

    def wait_for(self, promql: str, want: Callable[[float], bool], timeout: float = 30.0) -> float:
        """Poll until ``promql`` has one sample for which ``want(value)`` holds; its value."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while time.monotonic() < deadline:
            last = self.value(promql)
            if last is not None and want(last):
                return last
            time.sleep(0.25)
        raise AssertionError(f"prometheus: {promql!r} is {last} after {timeout:g}s\n"
                             f"{log_tail(self.log_path, 10)}")

    def targets(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10.0) as response:
            found: list[dict[str, Any]] = json.load(response)["data"]["activeTargets"]
            return found

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
