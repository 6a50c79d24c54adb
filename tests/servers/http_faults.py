"""A fault-injecting HTTP proxy in front of a real server (VictoriaMetrics), for the tests.

Each request takes the next programmed action (``push``), or the default one (pass
through): forward it, answer with a status (429 with ``Retry-After``, 503, 400, ...),
delay, stall until released, or drop the connection without an answer. Every request is
recorded with its arrival time, body size and what was done, so a test can assert on the
exact sequence (e.g. that a retry waited for ``Retry-After``).

Runs in the test's own event loop (asyncio): ``async with FaultProxy(vm.url) as proxy``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType

import aiohttp
from aiohttp import web

HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                         "content-encoding", "host"})


@dataclass(frozen=True)
class Action:
    """What to do with one request. ``status=None`` forwards it upstream."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    delay: float = 0.0  # seconds before acting
    stall: bool = False  # hold until release() or close()
    reset: bool = False  # drop the connection without answering

    @property
    def label(self) -> str:
        if self.reset:
            return "reset"
        if self.stall:
            return "stall"
        return "pass" if self.status is None else str(self.status)


PASS = Action()


def respond(status: int, body: str = "", retry_after: float | None = None,
            delay: float = 0.0) -> Action:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    if body:
        headers["Content-Type"] = "application/json"
    return Action(status=status, headers=headers, body=body, delay=delay)


def too_many(retry_after: float) -> Action:
    return respond(429, '{"code":"too many requests","message":"slow down"}', retry_after)


def unavailable() -> Action:
    return respond(503, '{"code":"unavailable","message":"try later"}')


def bad_request(message: str = "unable to parse") -> Action:
    return respond(400, f'{{"code":"invalid","message":"{message}"}}')


def delayed(seconds: float) -> Action:
    return Action(delay=seconds)


STALL = Action(stall=True)
RESET = Action(reset=True)


@dataclass(frozen=True)
class Seen:
    """One request as the proxy saw it."""

    method: str
    path: str
    size: int
    lines: int
    action: str
    at: float  # time.monotonic() on arrival
    status: int | None  # what the client got (None: reset or stalled)


class FaultProxy:
    """Proxy to ``upstream`` (``http://host:port``) on a free loopback port."""

    def __init__(self, upstream: str, default: Action = PASS) -> None:
        self.upstream = upstream.rstrip("/")
        self.default = default
        self.seen: list[Seen] = []
        self._queue: deque[Action] = deque()
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0
        self.inflight = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, *actions: Action) -> None:
        """Program the next requests, in order; after them the default applies again."""
        self._queue.extend(actions)

    def release(self) -> None:
        """Let every stalled request (and future ``STALL`` ones) go on upstream."""
        self._released.set()

    def statuses(self) -> list[int | None]:
        return [s.status for s in self.seen]

    async def __aenter__(self) -> FaultProxy:
        app = web.Application(client_max_size=256 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        action = self._queue.popleft() if self._queue else self.default
        body = await request.read()
        arrived = time.monotonic()
        self.inflight += 1
        status: int | None = None
        try:
            if action.delay:
                await asyncio.sleep(action.delay)
            if action.stall:
                await self._released.wait()
            if action.reset:
                assert request.transport is not None
                request.transport.abort()
                raise ConnectionResetError("reset by the fault proxy")
            if action.status is not None:
                status = action.status
                return web.Response(status=action.status, text=action.body or None,
                                    headers=action.headers)
            response = await self._forward(request, body)
            status = response.status
            return response
        finally:
            self.inflight -= 1
            self.seen.append(Seen(request.method, request.path, len(body),
                                  body.count(b"\n") + 1 if body else 0, action.label, arrived,
                                  status))

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            async with self._session.request(request.method, self.upstream + request.path_qs,
                                             data=body, headers=headers) as upstream:
                data = await upstream.read()
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
                return web.Response(status=upstream.status, body=data, headers=out)
        except (aiohttp.ClientError, OSError) as exc:
            return web.Response(status=502, text=f"upstream unreachable: {exc}")
