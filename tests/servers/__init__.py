"""Real servers for the tests: PostgreSQL, VictoriaMetrics, network faults.

Modules: `postgres` (PostgresServer), `victoria` (VictoriaMetrics), `faults` (blackhole,
closed_port), `fixtures` (the pytest plugin). This package module holds what they share:
free ports, process-tree signals read from /proc, deadlines, and a safety net that kills
every server still running when the interpreter exits, so a crashed session leaves nothing
behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType

if sys.version_info >= (3, 11):
    from typing import Self
else:  # the suite runs on every supported Python (./dev test --all-pythons)
    from typing_extensions import Self

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 30.0  # generous: a loaded 2-core CI machine
STOP_TIMEOUT = 30.0


class ServerError(RuntimeError):
    """A test server failed to start, stop or answer."""


class ServerUnavailable(ServerError):
    """A server cannot run here at all (binaries or user missing); the message says how to
    install it. The fixtures turn it into a skip, or a failure under LIFECYCLE_REQUIRE_SERVERS=1.
    """


def scratch_dir() -> str:
    """Where servers keep their data: $LIFECYCLE_SERVERS_TMP, else /dev/shm when it is a
    roomy world-writable tmpfs (copying a PostgreSQL data directory there takes 0.1 s
    instead of over 1 s on a slow disk), else /tmp. Each must be traversable by `postgres`.
    """
    if env := os.environ.get("LIFECYCLE_SERVERS_TMP"):
        return env
    with contextlib.suppress(OSError):
        stat = os.statvfs("/dev/shm")
        mode = os.stat("/dev/shm").st_mode
        if stat.f_bavail * stat.f_frsize >= 1 << 30 and mode & 0o1777 == 0o1777:
            return "/dev/shm"
    return "/tmp"


SCRATCH_PREFIX = "lifecycle-"
_OWNER_FILE = "owner.pid"


def make_scratch(kind: str) -> Path:
    """A fresh 0700 directory for one server, stamped with our pid for `sweep_stale`."""
    path = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{kind}-", dir=scratch_dir()))
    (path / _OWNER_FILE).write_text(str(os.getpid()))
    return path


def sweep_stale() -> list[Path]:
    """Delete server directories whose test process died without cleaning up (SIGKILL,
    os._exit); directories of live sessions, even concurrent ones, are left alone."""
    removed: list[Path] = []
    for path in Path(scratch_dir()).glob(f"{SCRATCH_PREFIX}*"):
        try:
            owner = int((path / _OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if owner != os.getpid() and not is_alive(owner):
            for pidfile in path.glob("*/postmaster.pid"):
                remove_pg_shm(pidfile)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def remove_pg_shm(pidfile: Path) -> None:
    """Remove the SysV segment a killed postmaster left (line 7 of postmaster.pid)."""
    with contextlib.suppress(OSError, IndexError, subprocess.SubprocessError):
        fields = pidfile.read_text().splitlines()[6].split()
        if len(fields) == 2 and fields[1].isdigit():
            subprocess.run(["ipcrm", "-m", fields[1]], capture_output=True, check=False,
                           timeout=10)


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_executable(env: str, name: str) -> Path | None:
    """``$env``, else ``name`` on PATH, else ``/usr/bin/name``: the first that is executable."""
    for candidate in (os.environ.get(env), shutil.which(name), f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll `predicate` until it is true; ServerError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise ServerError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- processes, read from /proc -------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def process_state(pid: int) -> str | None:
    """The state letter from /proc (R, S, T for stopped, Z, ...), None when gone."""
    stat = _stat(pid)
    return stat[0] if stat is not None else None


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children first, then theirs)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[0] not in ("Z", "X"):
                parents.setdefault(stat[1], []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    """Send `sig` to each process that still exists."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def freeze(pids: Iterable[int], timeout: float = 5.0) -> list[int]:
    """SIGSTOP each process and wait until the kernel shows it stopped (signals are
    delivered asynchronously); returns the pids that were stopped."""
    stopped = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
    deadline = time.monotonic() + timeout
    while any(process_state(pid) not in ("T", "t", "Z", "X", None) for pid in stopped):
        if time.monotonic() >= deadline:
            raise ServerError(f"processes did not stop within {timeout:.0f} s: {stopped}")
        time.sleep(0.005)
    return stopped


def thaw(pids: Iterable[int]) -> None:
    """SIGCONT each process and wait briefly until none is shown stopped."""
    pending = list(pids)
    signal_all(pending, signal.SIGCONT)
    deadline = time.monotonic() + 5.0
    while any(process_state(pid) == "T" for pid in pending) and time.monotonic() < deadline:
        time.sleep(0.005)


def wait_gone(pids: Iterable[int], timeout: float) -> bool:
    """Wait until none of `pids` is alive (zombies count as gone); False on timeout."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        pending = [pid for pid in pending if is_alive(pid)]
        if not pending:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` so the server is SIGKILLed if this process dies without cleanup
    (e.g. os._exit from pytest-timeout's thread method).

    The kernel sends the signal when the *thread* that forked exits, so it is only used from
    the main thread: a server started from a worker thread must not die with that thread.
    """
    if threading.current_thread() is threading.main_thread():
        return _die_with_parent
    return None


# --- atexit safety net ----------------------------------------------------------------------

_live: dict[int, Callable[[], None]] = {}
_live_lock = threading.Lock()


def track(owner: object, kill: Callable[[], None]) -> None:
    """Remember a running server; `kill` runs at interpreter exit unless `untrack`ed."""
    with _live_lock:
        _live[id(owner)] = kill


def untrack(owner: object) -> None:
    with _live_lock:
        _live.pop(id(owner), None)


@atexit.register
def _kill_leftovers() -> None:
    with _live_lock:
        leftovers = list(_live.values())
        _live.clear()
    for kill in leftovers:
        with contextlib.suppress(Exception):
            kill()


def log_tail(path: Path, lines: int = 25) -> str:
    """The end of a server log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class ManagedServer:
    """What every test server shares: a context manager that closes on exit (also when the
    start failed), ``stalled()``, ``pid`` and ``running``. Subclasses provide
    start/stall/resume/close and keep their main process in ``_proc``."""

    _proc: subprocess.Popen[bytes] | None = None
    _started_once = False
    _PORT_TAKEN = ""  # the server's log text when its port was taken before it bound it
    port: int
    log_path: Path
    dir: Path

    def _spawn(self, timeout: float) -> None:
        raise NotImplementedError

    def _spawn_on_a_free_port(self, timeout: float) -> None:
        """Spawn; if someone took the free port first, retry on another. Only a brand-new
        server may move: a restarted one keeps its port, as clients hold its address."""
        for attempt in range(3):
            try:
                self._spawn(timeout)
            except ServerError:
                if (self._started_once or attempt == 2
                        or self._PORT_TAKEN not in log_tail(self.log_path)):
                    raise
                self.port = free_port()
            else:
                self._started_once = True
                return

    @property
    def pid(self) -> int | None:
        """The server's main process (the postmaster) while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        raise NotImplementedError

    def stall(self) -> None:
        raise NotImplementedError

    def resume(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, and SIGKILL after ``timeout`` (servers that must flush override this)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            untrack(self)
            shutil.rmtree(self.dir, ignore_errors=True)

    def _emergency_close(self) -> None:
        """At interpreter exit, if the test forgot close(): no process, no directory."""
        with contextlib.suppress(Exception):
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    @contextlib.contextmanager
    def stalled(self) -> Iterator[Self]:
        """Stalled inside the block, resumed on exit (also on error)."""
        self.stall()
        try:
            yield self
        finally:
            self.resume()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
