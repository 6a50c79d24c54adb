"""``InfluxWriter``: a buffered, retrying, spooling InfluxDB writer as a lifecycle service.

Why not the official batching ``WriteApi``: it runs on threads that outlive ``close()``
and retries forever (incident 1 in docs/architecture.md). This writer uses only
``InfluxDBClientAsync`` (aiohttp, no threads) and adds what the async API lacks: a bounded
buffer, batching, retries with backoff, a circuit breaker, adaptive batch sizes, and a
durable SQLite spool for whatever cannot be delivered, replayed when the server answers
again (incident 3), or, in disk mode, for everything accepted (incident S2).
See docs/influx.md for the guarantees and the knobs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from lifecycle import ConfigError, Health, Service
from lifecycle.redact import mask_url, scrub

from ..spool import Batch, Spool, Synchronous
from ._background import Background
from ._barrier import Tickets
from ._buffer import LineBuffer, admit
from ._delivery import Deliverer
from ._http import Poster
from ._lanes import LanePolicy
from ._ledger import SpoolLedger
from ._lines import LineEncoder, Record
from ._policy import BatchSizer, CircuitBreaker, RetryPolicy
from ._replay import Replayer
from ._settings import Durability, InfluxSettings, WhenFull
from ._stats import Counters, InfluxStats

__all__ = ["InfluxStats", "InfluxWriter", "PointsDroppedError", "WriterClosedError"]

FLUSH_MARGIN = 0.25  # seconds the flush stage leaves of its deadline
log = logging.getLogger("lifecycle.adapters.influx")


class WriterClosedError(RuntimeError):
    """``write()`` after the writer's stop began: the points were not accepted."""


class PointsDroppedError(RuntimeError):
    """Raised by the last stop stage when accepted points were dropped during the run, so
    that the loss fails the report (its text gives the count and the reasons)."""


class InfluxWriter(Background, Service):
    """Accepts points without blocking and gets them into InfluxDB, or into the spool.

    With no ``url`` it runs in spool-only mode: everything goes to the spool, replayed by
    a later run that has a server configured.
    """

    stop_stages = InfluxSettings().stop_stages()

    def __init__(self, url: str | None, token: str | None = None, org: str | None = None,
                 bucket: str | None = None, *, settings: InfluxSettings | None = None,
                 spool_path: str | os.PathLike[str] | None = None,
                 batch_size: int = 5000, flush_interval: float = 1.0,
                 max_buffer_points: int = 100_000, max_buffer_bytes: int = 32 * 2**20,
                 when_full: WhenFull = "spool", precision: str = "ns",
                 max_attempts: int = 5, retry_backoff: tuple[float, float] = (0.5, 30.0),
                 retry_jitter: float = 0.5, breaker_threshold: int = 5,
                 breaker_reset: tuple[float, float] = (5.0, 60.0),
                 timeout: float = 10.0, connect_timeout: float = 5.0,
                 spool_max_bytes: int = 256 * 2**20, spool_fsync: Synchronous = "full",
                 max_in_flight: int = 2, flush_timeout: float | None = None,
                 spool_timeout: float | None = None, close_timeout: float | None = None,
                 durability: Durability = "disk", commit_interval: float = 0.05,
                 **service_kwargs: Any) -> None:
        given = locals()  # the knobs, by the names InfluxSettings gives them
        keywords = {knob: given[knob] for knob in InfluxSettings.knobs()}
        super().__init__(**service_kwargs)
        try:
            s = self.settings = InfluxSettings.resolve(settings, keywords)
        except ConfigError as exc:
            raise ConfigError(f"InfluxWriter {self.name!r}: {exc}") from None
        self.url = url or None
        if self.url and not bucket:
            raise ConfigError(f"InfluxWriter {self.name!r}: a bucket is required with a url")
        self._token = token or None
        self.org = org
        self.bucket = bucket
        self._disk = s.disk
        self._tickets = Tickets()
        # deadlines not given are defaults: they shrink to fit a smaller shutdown budget
        self.stop_stages = s.stop_stages()
        self._origin = uuid.uuid4().hex
        path = Path(s.spool_path) if s.spool_path is not None else Path("var/spool") / self.name
        self._c = Counters()
        self.spool_store = Spool(path, max_bytes=s.spool_max_bytes, synchronous=s.spool_fsync,
                                 chunk_points=s.batch_size, origin=self._origin)
        self._encoder = LineEncoder(s.precision, chunk=s.batch_size)
        breaker = CircuitBreaker(s.breaker_threshold, *s.breaker_reset)
        sizer = BatchSizer(s.batch_size)
        self._deliverer = Deliverer(
            self._post, RetryPolicy(s.max_attempts, *s.retry_backoff, s.retry_jitter), breaker,
            sizer, lambda: self._c.add(retried=1))
        self._lanes = LanePolicy(breaker, sizer, batch_size=s.batch_size,
                                 flush_interval=s.flush_interval,
                                 max_in_flight=s.max_in_flight, from_buffer=not s.disk)
        self._buf = LineBuffer(s.max_buffer_points, s.max_buffer_bytes)
        self._ledger = SpoolLedger(self.spool_store, self._c, self._origin)
        self._replayer = Replayer(self.name, self._ledger, self._deliverer, self._buf)
        self._ledger.name = self.name
        self._ledger.quiet = self._replayer.quiet = self._disk
        breaker.on_change = self._breaker_changed
        self._accepting = True
        self._in_flight = 0  # live batches out (being sent or spilled)
        self._replaying = False
        self._poster: Poster | None = None
        self._wake: anyio.Event | None = None
        self._spill_wake: anyio.Event | None = None

    @classmethod
    def from_env(cls, name: str | None = None, *, environ: Mapping[str, str] | None = None,
                 **kwargs: Any) -> InfluxWriter:
        """From ``INFLUXDB_URL``, ``INFLUXDB_TOKEN``, ``INFLUXDB_ORG``, ``INFLUXDB_BUCKET``
        (and ``INFLUXDB_SPOOL_DIR``, unless a ``spool_path`` is given, as a keyword or in
        ``settings``); no URL means spool-only mode. The default name is the
        constructor's, ``influx_writer``."""
        env = os.environ if environ is None else environ
        if name is not None:
            kwargs["name"] = name
        spool_dir = env.get("INFLUXDB_SPOOL_DIR")
        settings = kwargs.get("settings")
        if "spool_path" not in kwargs and spool_dir:
            if not isinstance(settings, InfluxSettings):
                kwargs["spool_path"] = spool_dir
            elif settings.spool_path is None:
                kwargs["settings"] = dataclasses.replace(settings, spool_path=spool_dir)
        return cls(env.get("INFLUXDB_URL") or None, env.get("INFLUXDB_TOKEN") or None,
                   env.get("INFLUXDB_ORG") or None, env.get("INFLUXDB_BUCKET") or None,
                   **kwargs)

    def __repr__(self) -> str:
        where = mask_url(self.url) if self.url else "spool-only"
        token = ", token=***" if self._token else ""
        return f"<InfluxWriter {self.name!r} {self.state.value} {where} bucket={self.bucket!r}{token}>"

    def secrets(self) -> Iterable[str]:
        return [self._token] if self._token else []

    @property
    def spool_only(self) -> bool:
        return self.url is None

    @property
    def stats(self) -> InfluxStats:
        """A consistent snapshot of the counters (see :class:`InfluxStats`)."""
        return self._c.snapshot()

    # ----- accepting ----------------------------------------------------------------------
    def write(self, record: Record) -> int:
        """Accept one record (``Point``, line protocol ``str``/``bytes`` with one or more
        lines, or a dict); never blocks on the network. Returns the points accepted (0 when
        ``when_full="drop_newest"`` dropped them). Raises :class:`WriterClosedError` after
        stop began, TypeError/ValueError for what is not a point (counted as rejected)."""
        try:
            batch = self._encoder.encode(record)
        except (TypeError, ValueError):
            self._c.add(rejected=1)
            raise
        return self._accept([batch])

    def write_many(self, records: Iterable[Record]) -> int:
        """Accept many records at once (cheaper per point); all or, if one is invalid, none."""
        try:
            batches = self._encoder.encode_many(records)
        except (TypeError, ValueError):
            self._c.add(rejected=1)
            raise
        return self._accept(batches)

    def _accept(self, batches: list[Batch]) -> int:
        n = sum(b.count for b in batches)
        if not self._accepting:
            self._c.add(rejected=n)
            raise WriterClosedError(f"InfluxWriter {self.name!r} is stopping: {n} point(s) "
                                    "refused (counted as rejected)")
        self._c.add(accepted=n, buffered=n)
        kept = admit(self._buf, batches, self.settings.when_full, self.settings.batch_size,
                     spill=lambda batch: self._ledger.spill(batch, reopen=self._accepting),
                     drop=lambda k: self._c.drop(k, "buffer_full"))
        if self._lanes.full_batch(len(self._buf)) and self._wake is not None:
            self._wake.set()
        if self._spill_wake is not None and (self._disk or self._buf.high_water()):
            self._spill_wake.set()
        return kept

    # ----- lifecycle hooks -------------------------------------------------------------------
    async def start(self) -> None:
        self._accepting = True
        self._wake = anyio.Event()
        self._spill_wake = anyio.Event()
        if self.url is not None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(f"InfluxWriter {self.name!r} needs asyncio: influxdb-client's "
                                   "WriteApiAsync does not run under trio (spool-only mode does)"
                                   ) from None
        await anyio.to_thread.run_sync(self._ledger.open)
        if self.url is not None and self.bucket is not None:
            self._poster = Poster(self.url, self._token, self.org, self.bucket,
                                  timeout=self.settings.timeout,
                                  connect_timeout=self.settings.connect_timeout)
        else:
            log.warning("%s: no InfluxDB url configured: spool-only mode (points are kept in "
                        "%s for a later run)", self.name, self.spool_store.directory)

    async def run(self) -> None:
        """The sender and the spiller; both end (interrupted work back in the buffer) as soon
        as shutdown is announced, so the stop stages own the final flush."""
        self._in_flight = 0
        async with anyio.create_task_group() as tg:
            for lane in range(self.settings.max_in_flight):
                tg.start_soon(self._send_loop, lane)
            tg.start_soon(self._commit_loop if self._disk else self._spill_loop)
            await self.wait_shutdown()
            tg.cancel_scope.cancel()

    async def check(self) -> Health:
        """Always ok (a restart cannot fix a remote outage); says what is degraded."""
        stats = self.stats
        state = self._deliverer.breaker.state
        problems = [p for p in (f"breaker {state}" if state != "closed" else "",
                                "spool full" if self.spool_store.full else "",
                                "spool-only mode" if self.spool_only else "") if p]
        return Health(True, ", ".join(problems), {"buffered": stats.buffered,
                                                   "spool_backlog": stats.spool_backlog})

    async def accept(self) -> None:
        """Stage 1: refuse new points (they raise WriterClosedError and count as rejected)."""
        self._accepting = False

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every point accepted before the call is written to the server or
        committed to the spool; False if ``timeout`` ran out first (what was not done goes
        on in the background). Memory mode sends the buffer while the server answers (a
        little less than ``timeout``, or ``flush_timeout``) and commits the rest to the
        spool; disk mode commits the buffer at once. Also stage 2 of the stop: there, disk
        mode then replays the spool while the server answers."""
        limit = self.flush_deadline if timeout is None else timeout
        budget = max(0.0, limit - FLUSH_MARGIN)
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            if not self._disk:
                with anyio.move_on_after(budget):
                    await self._send_buffer()
            if self._buf:
                await self._spill_batches(self._buf.drain())
            # The buffer is empty now: what was accepted before the call is written, in the
            # spool, or in a batch already out (a sender or a commit may have taken it
            # after the call); wait for those, not for what leaves later.
            await self._tickets.wait(self._tickets.issued)
            if self._disk and not self._accepting:
                with anyio.move_on_after(budget):
                    while self._poster is not None and self._replayer.due():
                        await self._replayer.run(self._lanes.window, lambda: True)
            return True
        return False

    @property
    def flush_deadline(self) -> float:
        """Seconds the flush stage has: ``flush_timeout``, or the default 5 s as shrunk to
        fit the supervisor's shutdown budget."""
        return next(stage.timeout for stage in self.stages() if stage.name == "flush")

    async def _send_buffer(self) -> None:
        """Deliver the buffer while the server answers; the unsent rest stays in it."""
        while self._buf and self._lanes.online(self._poster is not None):
            batch = self._buf.take(self._lanes.batch(online=True))
            with self._buf.holding(batch), self._tickets.ticket():
                if not await self._send_live(batch, keep_rest=True):
                    break

    async def spool(self) -> None:
        """Stage 3: whatever is still in memory goes to the spool, in one transaction."""
        self._accepting = False
        if self._buf:
            await self._spill_batches(self._buf.drain())

    async def close(self) -> None:
        """Stage 4: close the HTTP client and the spool; count anything left as dropped.
        Raises :class:`PointsDroppedError` (after closing) if any point was dropped."""
        self._accepting = False
        try:
            if self._poster is not None:
                poster, self._poster = self._poster, None
                await poster.close()
        finally:
            left = sum(batch.count for batch in self._buf.drain())
            if left:
                self._c.drop(left, "shutdown")
                log.error("%s: %d point(s) could not be spooled before the deadline: dropped",
                          self.name, left)
            with anyio.CancelScope(shield=True):  # a checkpoint and a close: milliseconds
                await anyio.to_thread.run_sync(self.spool_store.close)
        self._fail_on_loss()

    def _fail_on_loss(self) -> None:
        stats = self.stats
        lost = []
        if stats.dropped:
            reasons = ", ".join(f"{why}: {n}" for why, n in sorted(stats.dropped_reasons.items()))
            lost.append(f"{stats.dropped} point(s) dropped of {stats.accepted} accepted "
                        f"({reasons})")
        if stats.inherited_lost:
            lost.append(f"{stats.inherited_lost} point(s) of an earlier run lost")
        lost.extend(q.describe() for q in self.spool_store.quarantines)
        if lost:
            raise PointsDroppedError(f"InfluxWriter {self.name!r}: " + "; ".join(lost))

    async def stop(self) -> None:
        """All four stages in order, for use without a Supervisor."""
        for stage in self.stages():
            with anyio.move_on_after(stage.timeout):
                await getattr(self, stage.name)()

    async def requeue_dead_letters(self) -> int:
        """Move every dead letter back to the spool's queue to be replayed (e.g. after a
        token or a schema was fixed); returns the points moved. Counters follow them."""
        moved = await anyio.to_thread.run_sync(self._ledger.requeue)
        if self._wake is not None:
            self._wake.set()
        return moved

    def _breaker_changed(self, state: str) -> None:
        if state == "open":
            log.warning("%s: circuit breaker opened: requests pause (last error: %s)",
                        self.name, scrub(self._deliverer.last_error, self.secrets()) or "none")
        else:
            log.info("%s: circuit breaker closed: the server answers again", self.name)
            self._ledger.end_spooling()

    def report_details(self) -> dict[str, Any]:
        details = self.stats.to_dict()
        details.update(mode="spool-only" if self.spool_only else "online",
                       url=mask_url(self.url) if self.url else None, bucket=self.bucket,
                       spool=str(self.spool_store.directory),
                       spool_state=self.spool_store.state.value,
                       spool_unsettled=self.spool_store.unsettled,
                       spool_quarantined=[q.to_dict() for q in self.spool_store.quarantines],
                       breaker=self._deliverer.breaker.state,
                       breaker_opened=self._deliverer.breaker.opened,
                       batch_size=self._deliverer.sizer.current,
                       last_error=scrub(self._deliverer.last_error, self.secrets()) or None)
        return details
