"""A real PostgreSQL server for tests, from its binaries, on a free loopback port.

`initdb` runs once (PostgresTemplate); each PostgresServer copies that data directory, which
takes a fraction of a second, so a test can own a server it may stall or kill.
PostgreSQL refuses to run as root: as root its binaries run as the `postgres` user (setuid in
the child, like `runuser -u postgres --` but without a wrapper process, so the pid we hold is
the postmaster's) in a temporary directory that user owns (see `scratch_dir`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.servers import (
    LOOPBACK,
    START_TIMEOUT,
    STOP_TIMEOUT,
    ManagedServer,
    ServerError,
    ServerUnavailable,
    descendants,
    die_with_parent,
    free_port,
    freeze,
    is_alive,
    log_tail,
    make_scratch,
    remove_pg_shm,
    signal_all,
    thaw,
    track,
    untrack,
    wait_gone,
    wait_until,
)

INSTALL_HINT = (
    "PostgreSQL binaries (initdb, postgres, psql) not found: apt-get install postgresql "
    "(or run ./dev test, which installs it), or set LIFECYCLE_PG_BIN to their directory"
)
SUPERUSER = "postgres"  # bootstrap superuser, trusted on the unix socket only

# Test settings: fsync off (a SIGKILL still loses no committed row, only an OS crash would;
# synchronous_commit stays on, since with it off a SIGKILL loses the last commits), few
# background processes, DSM in the data directory so a killed server leaks nothing
# in /dev/shm.
_SETTINGS = """
# --- lifecycle tests ---
listen_addresses = '127.0.0.1'
fsync = off
full_page_writes = off
autovacuum = off
max_parallel_workers_per_gather = 0
dynamic_shared_memory_type = mmap
shared_buffers = 32MB
max_connections = 100
log_min_messages = warning
log_line_prefix = '%m [%p] '
"""


def find_bindir() -> Path | None:
    """$LIFECYCLE_PG_BIN, else the directory of `initdb` on PATH, else the newest
    /usr/lib/postgresql/*/bin; None when there are no PostgreSQL binaries."""
    candidates: list[Path] = []
    if env := os.environ.get("LIFECYCLE_PG_BIN"):
        candidates.append(Path(env))
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).resolve().parent)

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres", "psql")):
            return bindir
    return None


class _RunAs:
    """Who runs the PostgreSQL binaries: ourselves, or `postgres` when we are root."""

    def __init__(self) -> None:
        self.uid: int | None = None
        self.gid: int | None = None
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerUnavailable(
                    "running as root, and PostgreSQL refuses root, but there is no 'postgres' "
                    "user to run it as (apt-get install postgresql creates it)"
                ) from None
            self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def popen_kwargs(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def run(self, args: list[str], cwd: Path, stdin: str | None = None) -> str:
        """Run a command to completion; ServerError with its output when it fails."""
        try:
            done = subprocess.run(
                args, cwd=cwd, input=stdin, capture_output=True, text=True, env=_env(),
                timeout=START_TIMEOUT * 2, check=False, **self.popen_kwargs(),
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerError(f"{Path(args[0]).name} timed out") from exc
        if done.returncode != 0:
            raise ServerError(
                f"{Path(args[0]).name} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return str(done.stdout)


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}


def _tempdir(runas: _RunAs, kind: str) -> Path:
    path = make_scratch(kind)
    runas.chown(path)  # mkdtemp makes it 0700; the owner must be the server's user
    return path


class PostgresTemplate:
    """An initialised data directory holding the test role and database (initdb runs once
    per session; servers copy it). The role authenticates with a random scram password."""

    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise ServerUnavailable(INSTALL_HINT)
        self.bindir = found
        self.runas = _RunAs()
        self.user = "lifecycle"
        self.password = secrets.token_hex(16)
        self.database = "lifecycle_test"
        self.dir: Path | None = None

    @property
    def datadir(self) -> Path:
        if self.dir is None:
            raise ServerError("template not created")
        return self.dir / "data"

    def create(self) -> None:
        """initdb, the test settings, then the role and database in single-user mode."""
        self.dir = _tempdir(self.runas, "pg-template")
        track(self, self.cleanup)
        try:
            self.runas.run(
                [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER,
                 "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                 "--locale=C", "--no-sync", "--wal-segsize=1"],
                cwd=self.dir,
            )
            with open(self.datadir / "postgresql.conf", "a") as conf:
                conf.write(_SETTINGS)
            sql = (
                f"CREATE ROLE {self.user} LOGIN CREATEDB PASSWORD '{self.password}';\n"
                f"CREATE DATABASE {self.database} OWNER {self.user};\n"
            )
            self.runas.run(
                [str(self.bindir / "postgres"), "--single", "-D", str(self.datadir),
                 "-c", "exit_on_error=on", "postgres"],
                cwd=self.dir, stdin=sql,
            )
        except BaseException:
            self.cleanup()
            raise

    def cleanup(self) -> None:
        untrack(self)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class PostgresServer(ManagedServer):
    _PORT_TAKEN = "bind"  # what the log says when the free port was taken before we bound it
    """One postmaster on 127.0.0.1:`port` with its own copy of the template data.

    The port, credentials and data survive stop/kill/restart, so a client's DSN stays valid.
    """

    host = LOOPBACK

    def __init__(self, template: PostgresTemplate | None = None) -> None:
        self._owns_template = template is None
        self.template = template or PostgresTemplate()
        if self.template.dir is None:
            self.template.create()
        self.user = self.template.user
        self.password = self.template.password
        self.database = self.template.database
        self.port = free_port()
        self.dir = _tempdir(self.template.runas, "pg")
        self.datadir = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped_pids: set[int] = set()
        track(self, self._emergency_close)

    def __repr__(self) -> str:  # no password here: reprs end up in test reports
        return f"<PostgresServer {self.host}:{self.port} pid={self.pid} stalled={self.is_stalled}>"

    @property
    def dsn(self) -> str:
        return (f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/"
                f"{self.database}")

    @property
    def is_stalled(self) -> bool:
        return bool(self._stopped_pids)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the postmaster and wait until it accepts connections."""
        if self.running:
            return
        if not self.datadir.exists():
            self.template.runas.run(["cp", "-a", str(self.template.datadir), str(self.datadir)],
                                    cwd=self.dir)
        self._spawn_on_a_free_port(timeout)

    def _spawn(self, timeout: float) -> None:
        with contextlib.suppress(FileNotFoundError):  # left by kill(); its pid may be reused
            (self.datadir / "postmaster.pid").unlink()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [str(self.template.bindir / "postgres"), "-D", str(self.datadir),
                 "-c", f"port={self.port}", "-c", f"unix_socket_directories={self.dir}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                env=_env(), preexec_fn=die_with_parent(), **self.template.runas.popen_kwargs(),
            )
        proc = self._proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise ServerError(f"postgres exited ({proc.returncode}):\n"
                                  f"{log_tail(self.log_path)}")
            lines = self._pidfile()  # line 8 turns "ready" once it accepts connections
            return len(lines) > 7 and lines[0] == str(proc.pid) and lines[7].strip() == "ready"

        try:
            wait_until(ready, timeout, f"postgres on port {self.port}")
        except ServerError:
            self.kill()
            raise

    def _pidfile(self) -> list[str]:
        try:
            return (self.datadir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Fast shutdown (SIGINT: clients are disconnected); SIGKILL after `timeout`."""
        proc = self._proc
        if proc is None:
            return
        self.resume()
        if proc.poll() is None:
            children = descendants(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return
            wait_gone(children, timeout)
        else:
            self.kill()  # died on its own: clean up its backends, pid file and IPC
            return
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend, as a crash would."""
        proc = self._proc
        if proc is None:
            return
        # Backends of a postmaster that already died are orphans and may still be running.
        others = {pid for pid in self._stopped_pids if pid != proc.pid and is_alive(pid)}
        if proc.poll() is None:
            # Freeze the postmaster first so it cannot fork while we collect its children.
            signal_all([proc.pid], signal.SIGSTOP)
            others.update(descendants(proc.pid))
            signal_all([proc.pid], signal.SIGKILL)
        signal_all(others, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT)
        if not wait_gone(others, STOP_TIMEOUT):
            raise ServerError(f"postgres processes survived SIGKILL: {sorted(others)}")
        self._stopped_pids.clear()
        self._proc = None
        pidfile = self.datadir / "postmaster.pid"
        remove_pg_shm(pidfile)  # the SysV segment outlives its processes
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop (if running) and start again on the same port with the same data."""
        self.stop(timeout)
        self.start(timeout)

    def stall(self) -> None:
        """SIGSTOP the postmaster and all backends: connections stay open, nothing answers
        (new connections complete the TCP handshake, then hang)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise ServerError("postgres is not running")
        self._stopped_pids.update(freeze([proc.pid]))  # first, so it forks no more
        self._stopped_pids.update(freeze(descendants(proc.pid)))

    def resume(self) -> None:
        """SIGCONT everything stall() stopped."""
        stopped, self._stopped_pids = self._stopped_pids, set()
        thaw(stopped)


    def close(self) -> None:
        """Stop the server and delete its directory (and the template if it owns it)."""
        try:
            super().close()
        finally:
            if self._owns_template:
                self.template.cleanup()


    # --- helpers for tests ----------------------------------------------------------------

    def backend_pids(self) -> list[int]:
        """Processes of the server other than the postmaster (backends, workers)."""
        return descendants(self.pid) if self.pid is not None else []

    def admin_sql(self, sql: str) -> str:
        """Run SQL as the superuser over the unix socket (psql, unaligned tuples-only)."""
        return self.template.runas.run(
            [str(self.template.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.dir), "-p", str(self.port), "-U", SUPERUSER, "-d", self.database,
             "-c", sql],
            cwd=self.dir,
        ).strip()
