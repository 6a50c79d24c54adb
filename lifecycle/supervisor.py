"""``Supervisor``: starts services in dependency order, serves, and closes them in a cascade."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from types import TracebackType
from typing import Any, TypeVar, overload

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio import RunFinishedError

from . import redact
from ._backend import now
from ._bounded import Jobs, unwrap
from ._closing import close_all
from ._declarations import check_leak_option
from ._listeners import Listeners
from ._runner import console_logging, exit_despite, run_event_loop, stuck_threads
from ._runtime import ServiceRuntime
from ._signals import (
    FORCE_HINT,
    HANDLED,
    HANDLER_CHECK_INTERVAL,
    HandlerGuard,
    SignalPolicy,
    interactive,
    signal_name,
)
from ._starting import start_all
from ._supervisor_state import SupervisorState
from .errors import ConfigError, StartupError
from .events import (
    Event,
    ServiceFailed,
    ShutdownForced,
    ShutdownRequested,
)
from .fallback import Fallback
from .graph import dependents, validate
from .logs import ReportLog, log_events
from .observe import Observer, attach_observers, blocking_threshold_seconds, run_alongside, serve_observers
from .outcome import Outcome
from .recorder import Recorder
from .reload import Reloader
from .report import FailureRecord, LifecycleReport
from .service import Kind, Service, ServiceState, check_kind
from .strategy import Cascades, check_strategy

__all__ = ["Supervisor", "SupervisorState"]

log = logging.getLogger("lifecycle")

Listener = Callable[[Event], None]
S = TypeVar("S", bound=Service)


class Supervisor:
    """Owns a set of services: validated at construction, started, served, closed, reported.

    Everything that can be wrong with the configuration raises :class:`ConfigError` here,
    before anything starts. See ``docs/concepts.md`` for the start and close plans.
    """

    def __init__(self, services: Sequence[Service], *, shutdown_timeout: float = 25.0,
                 drain_delay: float = 0.0, leak_check: Any = True, name: str = "app",
                 log_report: bool = True, restart_strategy: str = "one_for_one",
                 observers: Sequence[Observer] = (), blocking_threshold: float | None = 0.5,
                 stack_dump_signal: int | None = getattr(signal, "SIGUSR1", None)) -> None:
        if isinstance(services, (Service, str, bytes)) or not isinstance(services, Iterable):
            raise ConfigError(f"Supervisor(services) must be a list of services, got {services!r}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"Supervisor name must be a non-empty string, got {name!r}")
        self.services = list(services)
        check_leak_option(leak_check)
        self._by_name = validate(self.services, shutdown_timeout, drain_delay)
        self.restart_strategy = check_strategy(restart_strategy, "Supervisor restart_strategy")
        self._dependents = dependents(self._by_name)
        self.shutdown_timeout = float(shutdown_timeout)
        self.drain_delay = float(drain_delay)
        self.name = name
        self._leak_option = leak_check
        self._log_report = log_report
        self._secrets = sorted({s for svc in self.services for s in svc.secrets() if s},
                               key=len, reverse=True)
        self.report = LifecycleReport(name=name, shutdown_budget=self.shutdown_timeout)
        self.state = SupervisorState.NEW
        self.jobs = Jobs()
        self.origin = 0.0
        # one per subscribe() not yet unsubscribed; first the recorder (the report is complete
        # before anyone else sees an event), the end-of-run table, and the event log
        self.recorder = Recorder(self.report)
        self._listeners = Listeners([self.recorder, *([ReportLog(self.report)] if log_report
                                                       else []), log_events])
        self._runtimes: dict[str, ServiceRuntime] = {}
        self.cascades = Cascades(self._runtimes, self._by_name, self.restart_strategy)
        self.reloads = Reloader(self)
        self._requested: anyio.Event | None = None
        self._forced: anyio.Event | None = None
        self._early_reason: str | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        self._draining = False
        self._closed = False
        self._leaks: Any = None
        self._signals = SignalPolicy()
        self._guard: HandlerGuard | None = None
        self.blocking_threshold = blocking_threshold_seconds(blocking_threshold)
        self.stack_dump_signal = stack_dump_signal
        self._observers: list[Observer] = list(observers)
        self._detach: list[Callable[[], Any]] = []

    def __repr__(self) -> str:
        return f"<Supervisor {self.name!r} {self.state.value} services={list(self._by_name)}>"

    # ----- public surface -------------------------------------------------------------
    def __getitem__(self, name: str) -> Service:
        return self.resolve(name)

    @overload
    def resolve(self, name: str) -> Service: ...
    @overload
    def resolve(self, name: str, kind: Kind[S]) -> S: ...

    def resolve(self, name: str, kind: Kind[Service] | None = None) -> Service:
        """The started service ``name`` (for a Fallback, the candidate that won).

        With ``kind``, the type checker sees that type, and a service of another type is a
        ``TypeError`` naming both.
        """
        rt = self._runtimes.get(name)
        if rt is None or not rt.started:
            state = rt.declared.state.value if rt else (
                "not started" if name in self._by_name else "unknown")
            raise LookupError(f"service {name!r} is not running ({state})")
        return check_kind(rt.active, kind, f"supervisor {self.name!r} resolved {name!r}")

    @property
    def ready(self) -> bool:
        """Fit for traffic: started, not shutting down, and every required service running
        and not in a health incident. Optional services do not count."""
        if self.state != SupervisorState.RUNNING or self.shutdown_requested:
            return False
        for rt in self._runtimes.values():
            if rt.declared.optional:
                continue
            if rt.active.state != ServiceState.RUNNING:
                return False
            if rt.monitor is not None and rt.monitor.in_incident:
                return False
            if rt.degraded and isinstance(rt.declared, Fallback) and not rt.declared.degraded_ready:
                return False
        return True

    @property
    def alive(self) -> bool:
        """The process is doing its job (starting, serving or closing), not wedged or done."""
        return self.state in (SupervisorState.STARTING, SupervisorState.RUNNING,
                              SupervisorState.STOPPING)

    @property
    def started(self) -> bool:
        """Startup has completed (for a startup probe); stays true through the close."""
        return self.state in (SupervisorState.RUNNING, SupervisorState.STOPPING,
                              SupervisorState.STOPPED) and not self.report.startup_failed

    def health(self) -> dict[str, Any]:
        """A JSON-safe snapshot for probes: overall verdicts and each service's state."""
        services = {}
        for name, svc in self._by_name.items():
            rt = self._runtimes.get(name)
            active = rt.active if rt is not None else svc
            services[name] = {"state": active.state.value, "optional": svc.optional,
                              **(rt.health_view() if rt is not None else {})}
            if isinstance(svc, Fallback) and rt is not None and rt.started:
                services[name].update(svc.view(active))
        degraded = [name for name, rt in self._runtimes.items() if rt.degraded]
        return {"name": self.name, "state": self.state.value, "started": self.started,
                "ready": self.ready, "alive": self.alive, "degraded": degraded,
                "shutting_down": self.shutdown_requested, "draining": self._draining,
                "services": services}

    @property
    def shutdown_requested(self) -> bool:
        return self._early_reason is not None or (
            self._requested is not None and self._requested.is_set())

    def set_budget(self, *, shutdown_timeout: float | None = None,
                   drain_delay: float | None = None) -> None:
        """Change the shutdown budget or drain delay before the run (the CLI's overrides);
        validated again, so a ConfigError names what no longer fits."""
        if self.state != SupervisorState.NEW:
            raise RuntimeError(f"supervisor {self.name!r} already started: set the budget before")
        budget = self.shutdown_timeout if shutdown_timeout is None else shutdown_timeout
        drain = self.drain_delay if drain_delay is None else drain_delay
        validate(self.services, budget, drain)
        self.shutdown_timeout = float(budget)
        self.drain_delay = float(drain)

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` for every lifecycle event; returns an unsubscribe function."""
        return self._listeners.add(callback)

    def request_shutdown(self, reason: str = "requested", *, failed: bool = False) -> None:
        """Begin a graceful shutdown (safe from any thread, and during startup)."""
        if self._hop_to_loop(partial(self.request_shutdown, reason, failed=failed)):
            return
        if self.shutdown_requested:
            if failed and not self.report.service_failed:  # the exit code must say it
                self.emit(ShutdownRequested(None, reason=reason, failed=True))
            return
        self._early_reason = reason
        self._signals.shutdown_requested()
        if self._requested is not None:
            self._requested.set()
        self.emit(ShutdownRequested(None, reason=reason, failed=failed))

    def request_reload(self, reason: str = "requested") -> None:
        """Reload every service that has a ``reload()`` hook, as SIGHUP does (any thread)."""
        if not self._hop_to_loop(partial(self.reloads.request, reason)):
            self.reloads.request(reason)

    def run(self, *, backend: str = "asyncio", handle_signals: bool = True,
            exit_on_stuck_threads: bool = True,
            observers: Sequence[Observer] = ()) -> LifecycleReport:
        """Blocking entry point for ``main()``: serve until a signal or a shutdown request.

        SIGINT/SIGTERM start a graceful shutdown (also during startup); a second signal, more
        than ``SIGNAL_REPEAT_WINDOW`` s after the first, cancels everything still running at
        once. Returns the report; pass ``report.exit_code`` to ``sys.exit``. When the process
        configured no logging, the lifecycle log (each event, the report) goes to stderr
        for the run.

        Returns even when abandoned work will not end. Non-daemon threads started during the
        run and still alive after it would keep the interpreter from exiting: with
        ``exit_on_stuck_threads`` (the default) the process then exits at interpreter exit
        with ``report.exit_code`` after ``EXIT_GRACE`` s, naming them in a log line.
        """
        if backend not in ("asyncio", "trio"):
            raise ConfigError(f"Supervisor.run(backend=...) must be 'asyncio' or 'trio', not {backend!r}")
        before = threading.enumerate()
        main = partial(self.serve, handle_signals=handle_signals, observers=observers)
        with console_logging():  # the report is shown even when logging is not configured
            report = run_event_loop(backend, main)
        if exit_on_stuck_threads:
            exit_despite(stuck_threads(before), int(report.exit_code))
        return report

    async def serve(self, *, handle_signals: bool = True,
                    observers: Sequence[Observer] = ()) -> LifecycleReport:
        """Start, serve until shutdown is requested, close; return the report. Never raises
        for a failed start: the report says it (exit code 1). ``observers``: for this run."""
        self._observers += [*serve_observers(self.stack_dump_signal if handle_signals else None),
                            *observers]
        async with anyio.create_task_group() as tg:
            self._prepare()
            if handle_signals and threading.current_thread() is threading.main_thread():
                await tg.start(self._watch_signals)
                tg.start_soon(self._guard_handlers)
                await tg.start(self.reloads.watch_sighup)
            await run_alongside(self, self._observers, tg)  # the systemd notifier's pings
            try:
                if await start_all(self):
                    assert self._requested is not None
                    await self._requested.wait()
            finally:
                with anyio.CancelScope(shield=True):
                    await close_all(self)
                tg.cancel_scope.cancel()
        return self.report

    async def __aenter__(self) -> Supervisor:
        try:
            started = await start_all(self)
        except BaseException:  # cancelled (or worse) mid-startup: roll back all the same
            with anyio.CancelScope(shield=True):
                await close_all(self)
            raise
        if not started:
            with anyio.CancelScope(shield=True):
                await close_all(self)
            failed = [r.service for r in self.report.startup.values()
                      if r.outcome not in (Outcome.OK, Outcome.SKIPPED) and not r.optional]
            culprit = ", ".join(failed) or self.report.reason or "aborted"
            raise StartupError(f"startup of {self.name!r} failed: {culprit}", self.report)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        with anyio.CancelScope(shield=True):
            await close_all(self)

    # ----- what runtimes call (the Core protocol) -------------------------------------
    def emit(self, event: Event) -> None:
        for listener in self._listeners.for_type(type(event)):
            try:
                listener(event)
            except Exception:
                log.exception("lifecycle event listener %r failed", listener)

    def scrub(self, text: str | None) -> str | None:
        return redact.scrub(text, self._secrets) if text else text

    def describe(self, exc: BaseException | None) -> str | None:
        return None if exc is None else redact.describe_error(unwrap(exc), self._secrets)

    def record_failure(self, service: str, where: str, exc: BaseException, action: str = "") -> None:
        """Emit ``ServiceFailed`` with the exception's scrubbed record; callable from any
        thread (the event is then emitted on the loop, or here once the loop has ended)."""
        exc = unwrap(exc)
        tb = self.scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))) or ""
        on_loop = self._on_loop()
        event = ServiceFailed.of(FailureRecord(service, where, self.describe(exc) or "", tb,
                                               now() - self.origin if on_loop else 0.0, action))
        if not on_loop and self._loop_thread is not None:
            with contextlib.suppress(RunFinishedError):
                anyio.from_thread.run_sync(self.emit, event, token=self._token)
                return
        self.emit(event)

    # ----- internals ------------------------------------------------------------------
    def _hop_to_loop(self, call: Callable[[], object]) -> bool:
        """From another thread: run ``call`` on the event loop and say so (True)."""
        if self._loop_thread is None or threading.get_ident() == self._loop_thread:
            return False
        with contextlib.suppress(RunFinishedError):
            anyio.from_thread.run_sync(call, token=self._token)
        return True

    def _on_loop(self) -> bool:
        return self._loop_thread is not None and threading.get_ident() == self._loop_thread

    def _prepare(self) -> None:
        if self.state != SupervisorState.NEW:
            raise RuntimeError(f"supervisor {self.name!r} was already used; create a new one")
        if self._requested is not None:
            return
        self._requested = anyio.Event()
        self._forced = anyio.Event()
        if self._early_reason is not None:
            self._requested.set()
        self.origin = now()
        self._token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()
        self._runtimes = {name: ServiceRuntime(svc, self) for name, svc in self._by_name.items()}
        self.cascades = Cascades(self._runtimes, self._by_name, self.restart_strategy,
                                 lambda: self._requested)
        self._detach = attach_observers(self, self._observers)

    async def _watch_signals(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(*HANDLED) as signals:
            self._guard = HandlerGuard()
            task_status.started()
            async for signum in signals:
                self._on_signal(int(signum))

    async def _guard_handlers(self) -> None:
        """Libraries may install their own handlers at any time (a server's run()): look."""
        while True:
            await anyio.sleep(HANDLER_CHECK_INTERVAL)
            self._check_handlers()

    def _check_handlers(self) -> None:
        if self._guard is not None:
            self._guard.check()

    def _on_signal(self, signum: int) -> None:
        action = self._signals.classify(signum)
        if action == "shutdown":
            if signum == signal.SIGINT and interactive():
                log.warning(FORCE_HINT)
            self.request_shutdown(f"signal {signal_name(signum)}")
        elif action == "repeat":
            log.info("%s within %.2g s of the shutdown's start ignored: a repeat of the same "
                     "request, not a second one", signal_name(signum), self._signals.window)
        else:
            self._force(signum)

    def _force(self, signum: int | None) -> None:
        """Second signal: skip the remaining graceful stages, cancel everything now."""
        if self._forced is None or self._forced.is_set():
            return
        self._forced.set()
        self.jobs.interrupt_all()
        for rt in self._runtimes.values():
            if rt.host is not None:
                rt.host.interrupt()
        self.emit(ShutdownForced(None, signal=signum))

