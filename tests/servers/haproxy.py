"""A real haproxy (Debian package ``haproxy``) on loopback, in front of test backends.

It health-checks each backend with ``GET /readyz`` every ``check_interval`` (``fall 2 rise
1``: two failed checks take a server out of rotation, one good check puts it back) and
balances round-robin. By default it never retries (``retries 0``, no ``option redispatch``): a
request sent to a backend that refuses or cuts it is a failed request for the client, as
behind a balancer that does not retry (a Kubernetes Service's kube-proxy, most cloud network
balancers), so a test sees what an app's shutdown does to traffic. haproxy's own retries
(``retries=3``) would hide a refused connection when the process comes back within a second.
The admin socket answers ``status(server)`` (``UP``, ``DOWN``, ``MAINT``, ...).
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.servers import (
    LOOPBACK,
    START_TIMEOUT,
    ManagedServer,
    ServerError,
    ServerUnavailable,
    die_with_parent,
    free_port,
    log_tail,
    make_scratch,
    track,
    wait_until,
)

INSTALL_HINT = ("haproxy not found: apt-get install haproxy (or run ./dev test, which installs "
                "it), or set LIFECYCLE_HAPROXY_BIN to the binary")

CONFIG = """\
global
    maxconn 4096
    stats socket {admin} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    retries {retries}

frontend web
    bind {host}:{port}
    default_backend apps

backend apps
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter {inter}ms fastinter {inter}ms downinter {inter}ms fall 2 rise 1
{servers}
"""


def find_binary() -> Path | None:
    import os

    for candidate in (os.environ.get("LIFECYCLE_HAPROXY_BIN"), shutil.which("haproxy"),
                      "/usr/sbin/haproxy"):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


class HAProxy(ManagedServer):
    """haproxy on 127.0.0.1:``port`` balancing over ``backends`` (name -> port)."""

    host = LOOPBACK

    def __init__(self, backends: dict[str, int], *, check_interval: float = 0.1,
                 retries: int = 0) -> None:
        binary = find_binary()
        if binary is None:
            raise ServerUnavailable(INSTALL_HINT)
        self.binary = binary
        self.backends = dict(backends)
        self.port = free_port()
        self.dir = make_scratch("haproxy")
        self.admin = self.dir / "admin.sock"
        self.log_path = self.dir / "haproxy.log"
        self.check_interval = check_interval
        self.retries = retries
        self._proc: subprocess.Popen[bytes] | None = None
        track(self, lambda: self.stop(0.0))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _config(self) -> str:
        servers = "\n".join(f"    server {name} {LOOPBACK}:{port} check"
                            for name, port in self.backends.items())
        return CONFIG.format(admin=self.admin, host=self.host, port=self.port,
                             inter=max(int(self.check_interval * 1000), 10), servers=servers,
                             retries=self.retries)

    _PORT_TAKEN = "cannot bind socket"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if not self.running:
            self._spawn_on_a_free_port(timeout)

    def _spawn(self, timeout: float) -> None:
        cfg = self.dir / "haproxy.cfg"
        cfg.write_text(self._config())
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen([str(self.binary), "-db", "-f", str(cfg)],
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, cwd=self.dir,
                                          preexec_fn=die_with_parent())
        proc = self._proc

        def answering() -> bool:
            if proc.poll() is not None:
                raise ServerError(f"haproxy exited ({proc.returncode}):\n{log_tail(self.log_path)}")
            with contextlib.suppress(OSError):
                self.command("show info")
                return True
            return False

        try:
            wait_until(answering, timeout, f"haproxy admin socket {self.admin}")
        except ServerError:
            self.stop(0.0)
            raise

    def command(self, line: str, timeout: float = 5.0) -> str:
        """One command on the admin socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.admin))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def statuses(self) -> dict[str, str]:
        """Server name -> ``UP`` / ``DOWN`` / ``MAINT`` / ... (from ``show stat``)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row["status"].split()[0] for row in rows
                if row.get("pxname") == "apps" and row["svname"] in self.backends}

    def status(self, server: str) -> str:
        return self.statuses().get(server, "?")

    def wait_status(self, servers: Sequence[str], wanted: str, timeout: float = 30.0) -> None:
        wait_until(lambda: all(self.status(s) == wanted for s in servers), timeout,
                   f"haproxy servers {list(servers)} {wanted}", interval=0.01)
