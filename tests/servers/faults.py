"""Network faults for tests: a dead proxy that accepts and never answers, a refused port.

Both are real sockets on 127.0.0.1, so clients see what they would see in production:
for `blackhole()` the TCP connect succeeds and every read waits forever (only the client's
own deadline ends it); for `closed_port()` the connect is refused at once.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator

from tests.servers import LOOPBACK, ServerError

JOIN_TIMEOUT = 5.0


class _Blackhole:
    """Accepts every connection on a thread and keeps it open, reading and discarding what
    the client sends (so the client gets to wait for an answer), until `close()`."""

    def __init__(self, host: str) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.address: tuple[str, int] = (host, self._listener.getsockname()[1])
        self._wake_r, self._wake_w = socket.socketpair()
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(
            target=self._serve, name=f"test-blackhole-{self.address[1]}", daemon=True
        )
        self._thread.start()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    sock = key.fileobj
                    if sock is self._wake_r:
                        return
                    if sock is self._listener:
                        with contextlib.suppress(BlockingIOError, ConnectionAbortedError):
                            conn, _ = self._listener.accept()
                            conn.setblocking(False)
                            self._accepted.append(conn)
                            sel.register(conn, selectors.EVENT_READ)
                    elif isinstance(sock, socket.socket):
                        try:
                            data = sock.recv(65536)
                        except (BlockingIOError, InterruptedError):
                            continue
                        except OSError:
                            data = b""
                        if not data:  # the client gave up: let go of its socket
                            sel.unregister(sock)
                            sock.close()
                            self._accepted.remove(sock)

    def close(self) -> None:
        """Stop the thread (joined with a deadline) and close every socket."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(JOIN_TIMEOUT)
        for sock in (*self._accepted, self._listener, self._wake_r, self._wake_w):
            sock.close()
        self._accepted.clear()
        if self._thread.is_alive():
            raise ServerError(f"blackhole thread did not stop within {JOIN_TIMEOUT} s")


@contextlib.contextmanager
def blackhole(host: str = LOOPBACK) -> Iterator[tuple[str, int]]:
    """(host, port) of a listener that accepts TCP connections and never answers."""
    hole = _Blackhole(host)
    try:
        yield hole.address
    finally:
        hole.close()


@contextlib.contextmanager
def closed_port(host: str = LOOPBACK) -> Iterator[tuple[str, int]]:
    """(host, port) where connecting is refused. The port is held by a socket that is bound
    but not listening, so nothing else can take it while the block runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        yield host, int(sock.getsockname()[1])
