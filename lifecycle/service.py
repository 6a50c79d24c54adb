"""``Service``: what a user subclasses. Hooks, declared deadlines, and helpers for its code."""

from __future__ import annotations

import enum
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, overload

import anyio

from ._backend import now
from ._stoptoken import StopToken
from .every import LoopSpec, loop_spec
from .health import Health
from .policy import RestartPolicy
from .stage import Stage, shared_stage

if TYPE_CHECKING:
    from ._roles import SupervisorView


S = TypeVar("S", bound="Service")
#: The ``kind`` of ``dependency(name, kind)``: a class. Spelled as a callable because
#: mypy refuses an abstract class (``Database``) where ``type[S]`` is expected.
Kind = Callable[..., S]


class RuntimeHandle(Protocol):
    """What a service's helpers use of the supervisor's side of it (a ``ServiceRuntime``,
    which imports this module: a Protocol keeps ``lifecycle/`` free of import cycles)."""

    @property
    def supervisor(self) -> SupervisorView[Service]: ...
    def spawn(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], name: str) -> None: ...
    def spawn_thread(self, target: Callable[..., Any], args: tuple[Any, ...], label: str,
                     daemon: bool) -> threading.Thread: ...
    def dependency(self, name: str) -> Service: ...
    def request_shutdown(self, reason: str) -> None: ...


class ServiceState(str, enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


def snake_case(name: str) -> str:
    """``InfluxWriter`` -> ``influx_writer``, ``HTTPServer`` -> ``http_server``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


class Service:
    """A unit with a start, an optional long-running body, and a staged close.

    Class attributes declare the defaults; constructor keywords of the same names override
    them per instance. All hooks are optional. The supervisor owns every task and thread the service
    starts through :meth:`spawn`, :meth:`spawn_thread`, ``run()`` and ``@every`` loops.
    """

    name: str = ""
    depends_on: tuple[str, ...] = ()
    start_timeout: float = 10.0
    stop_timeout: float = 5.0
    stop_stages: tuple[Stage, ...] | None = None
    #: Seconds ``run()``, loops and spawned tasks get to end at close; None: the first
    #: stop stage's deadline (see docs/scheduling.md).
    tasks_timeout: float | None = None
    optional: bool = False
    restart: RestartPolicy = RestartPolicy()
    #: Which services restart with this one; None: the supervisor's ``restart_strategy``.
    restart_strategy: str | None = None
    check_interval: float = 10.0
    check_timeout: float = 5.0
    failure_threshold: int = 3
    grace_period: float = 10.0
    cooldown: float = 30.0
    reload_timeout: float = 10.0
    #: After a failed reload(): "continue", "restart" or "shutdown" (docs/supervision.md).
    on_reload_failure: str = "continue"

    #: The stages after fitting them into a supervisor's budget (set by its validation).
    _fitted_stages: tuple[Stage, ...] | None = None
    _loops: ClassVar[dict[str, LoopSpec]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        loops: dict[str, LoopSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                spec = loop_spec(value)
                if spec is not None:
                    loops[attr] = spec
                elif attr in loops:
                    del loops[attr]  # overridden without @every
        cls._loops = loops

    def __init__(self, *, name: str | None = None, depends_on: Iterable[str] | str | None = None,
                 start_timeout: float | None = None, stop_timeout: float | None = None,
                 optional: bool | None = None, restart: RestartPolicy | None = None,
                 check_interval: float | None = None, check_timeout: float | None = None,
                 failure_threshold: int | None = None, grace_period: float | None = None,
                 cooldown: float | None = None, tasks_timeout: float | None = None,
                 restart_strategy: str | None = None, reload_timeout: float | None = None,
                 on_reload_failure: str | None = None) -> None:
        self.name = name if name is not None else (type(self).name or snake_case(type(self).__name__))
        deps = type(self).depends_on if depends_on is None else depends_on
        self.depends_on = (deps,) if isinstance(deps, str) else tuple(deps)
        overrides = {"start_timeout": start_timeout, "stop_timeout": stop_timeout,
                     "optional": optional, "restart": restart, "check_interval": check_interval,
                     "check_timeout": check_timeout, "failure_threshold": failure_threshold,
                     "grace_period": grace_period, "cooldown": cooldown,
                     "tasks_timeout": tasks_timeout, "restart_strategy": restart_strategy,
                     "reload_timeout": reload_timeout, "on_reload_failure": on_reload_failure}
        for attr, value in overrides.items():
            if value is not None:
                setattr(self, attr, value)
        self.state = ServiceState.NEW  # written by its runtime's phase changes only
        # the runtime of the current start attempt, and that attempt's stop token (set by
        # _attempt_begins only): None and an unset token until a supervisor starts it
        self._rt: RuntimeHandle | None = None
        self._stop_token = StopToken()
        self._logger: logging.Logger | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.state.value}>"

    # ----- hooks (all optional) -------------------------------------------------------
    async def start(self) -> None:
        """Acquire resources; return when ready. Runs under ``start_timeout``."""

    async def run(self) -> None:
        """The long-running body, owned by the supervisor. Only used when overridden."""

    async def stop(self) -> None:
        """Release resources: the default single stop stage, under ``stop_timeout``."""

    async def reload(self) -> None:
        """Re-read configuration (SIGHUP, ``request_reload()``), under ``reload_timeout``.
        Only used when overridden."""

    async def check(self) -> bool | Health:
        """Health: True (or a healthy :class:`Health`) when the service works."""
        return True

    def secrets(self) -> Iterable[str]:
        """Strings (passwords, tokens) to scrub from every text recorded about this service."""
        return ()

    def report_details(self) -> dict[str, Any]:
        """JSON-safe facts put in the report after close (counters, what was held, ...)."""
        return {}

    # ----- declarations the supervisor reads -------------------------------------------
    def members(self) -> tuple[Service, ...]:
        """The services this declaration consists of: itself (a Fallback: its candidates)."""
        return (self,)

    def stages(self) -> tuple[Stage, ...]:
        """The close plan of this service: its ``stop_stages``, or one ``stop`` stage, with
        default deadlines shrunk to fit the supervisor's budget (see :func:`fit_stages`)."""
        fitted = self._fitted_stages
        return fitted if fitted is not None else self._declared_stages()

    def _declared_stages(self) -> tuple[Stage, ...]:
        if self.stop_stages is not None:
            return tuple(self.stop_stages)
        return (shared_stage("stop", self.stop_timeout, default=not self._chose("stop_timeout")),)

    def _chose(self, attr: str) -> bool:
        """Whether ``attr`` was set for this service (constructor or subclass), not inherited
        from ``Service`` itself."""
        return attr in vars(self) or any(attr in vars(k) for k in type(self).__mro__
                                         if k is not Service and k is not object)

    def does_work(self, stage: Stage) -> bool:
        """False for the inherited no-op ``stop()``: it reserves no time of the budget."""
        return not (stage.name == "stop" and type(self).stop is Service.stop)

    def tasks_deadline(self) -> float:
        """Seconds the owned tasks get at close: ``tasks_timeout``, else the first stage's."""
        own = self.tasks_timeout
        return float(own) if own is not None else float(self.stages()[0].timeout)

    @property
    def has_reload(self) -> bool:
        return type(self).reload is not Service.reload

    @property
    def has_run(self) -> bool:
        return type(self).run is not Service.run

    @property
    def loops(self) -> dict[str, LoopSpec]:
        return type(self)._loops

    # ----- helpers for code inside the service ------------------------------------------
    @property
    def log(self) -> logging.Logger:
        if self._logger is None:
            self._logger = logging.getLogger(f"lifecycle.service.{self.name}")
        return self._logger

    @property
    def shutting_down(self) -> bool:
        """True once shutdown was announced: loops should finish their iteration and return."""
        return self._stop_token.is_set()

    async def sleep(self, seconds: float) -> bool:
        """Sleep, waking at once on shutdown. True when the full time passed.

        Use as ``while await self.sleep(5): ...``.
        """
        if self._stop_token.is_set():
            await anyio.lowlevel.checkpoint()
            return False
        with anyio.move_on_after(seconds):
            await self._stop_token.wait()
            return False
        return True

    async def wait_shutdown(self) -> None:
        """Wait until shutdown is announced: the start of the drain, when readiness turns
        false. Loops and pollers stop here; servers should use :meth:`wait_drained`."""
        await self._stop_token.wait()

    async def wait_drained(self) -> None:
        """Wait until the drain is over: ``drain_delay`` after shutdown was announced, right
        before this service's tasks and stop stages are wound down. A server that serves
        until this returns keeps answering while load balancers take the process out."""
        await self._stop_token.wait_drained()

    async def ticks(self, interval: float, *, immediate: bool = False) -> AsyncIterator[int]:
        """Yield 0, 1, 2, ... every ``interval`` seconds (fixed rate) until shutdown begins.

        The first tick comes after one interval (at once with ``immediate=True``); ticks
        missed while the loop body ran are skipped, never bunched.
        """
        if not interval > 0:
            raise ValueError(f"ticks(interval) must be positive, got {interval!r}")
        next_at = now() + (0.0 if immediate else interval)
        count = 0
        while True:
            delay = next_at - now()
            if delay > 0:
                if not await self.sleep(delay):
                    return
            elif self.shutting_down:
                return
            yield count
            count += 1
            current = now()
            next_at += interval
            if next_at <= current:  # the body overran: skip to the next slot in the future
                next_at += interval * ((current - next_at) // interval + 1)

    def spawn(self, async_fn: Callable[..., Awaitable[Any]], *args: Any,
              name: str | None = None) -> None:
        """Run ``async_fn(*args)`` as a task owned by this service.

        It gets ``tasks_timeout`` (default: the first stop stage's deadline) to end after
        shutdown is announced, then is
        cancelled; an exception is logged and recorded in the report, never lost.
        """
        label = name or str(getattr(async_fn, "__name__", "task"))
        self._runtime("spawn()").spawn(async_fn, args, label)

    def spawn_thread(self, target: Callable[..., Any], *args: Any, name: str | None = None,
                     daemon: bool = False) -> threading.Thread:
        """Start a named thread owned by this service; ``target(stop_event, *args)``.

        ``stop_event`` (a ``threading.Event``) is set when shutdown begins. The thread is
        joined with the stop deadline; one that will not end is reported, never waited on
        forever.
        """
        label = name or str(getattr(target, "__name__", "thread"))
        return self._runtime("spawn_thread()").spawn_thread(target, args, label, daemon)

    @overload
    def dependency(self, name: str) -> Service: ...
    @overload
    def dependency(self, name: str, kind: Kind[S]) -> S: ...

    def dependency(self, name: str, kind: Kind[Service] | None = None) -> Service:
        """The started service ``name`` (a Fallback's winner); it must be in ``depends_on``.

        ``self.dependency("db", Database)`` is typed ``Database`` for the type checker and
        checked at run time: another type is a ``TypeError`` naming both services.
        """
        if name not in self.depends_on:
            raise LookupError(
                f"service {self.name!r} asked for {name!r}, which is not in its depends_on "
                f"{self.depends_on!r}")
        found = self._runtime("dependency()").dependency(name)
        return check_kind(found, kind, f"service {self.name!r} asked for {name!r}")

    @property
    def supervisor(self) -> SupervisorView[Service]:
        """The supervisor running this service (for health servers, notifiers, ...)."""
        return self._runtime("supervisor").supervisor

    def request_shutdown(self, reason: str = "requested by service") -> None:
        """Ask the supervisor to shut the whole app down."""
        self._runtime("request_shutdown()").request_shutdown(f"{self.name}: {reason}")

    # ----- the supervisor's side ---------------------------------------------------------
    def _attempt_begins(self, runtime: RuntimeHandle, token: StopToken) -> None:
        """A start attempt of this service begins: its helpers now go to ``runtime``, and
        ``token`` says when it is told to stop (a restart brings a fresh one)."""
        self._rt = runtime
        self._stop_token = token

    def _runtime(self, what: str) -> RuntimeHandle:
        if self._rt is None:
            raise RuntimeError(f"{what} of service {self.name!r} needs a running Supervisor")
        return self._rt


def check_kind(found: Service, kind: Kind[Service] | None, asked: str) -> Service:
    """``found``, unless it is not a ``kind``: then a TypeError naming both sides."""
    if kind is None:
        return found
    if not isinstance(kind, type):
        raise TypeError(f"{asked}: kind must be a class, got {kind!r}")
    if isinstance(found, kind):
        return found
    raise TypeError(f"{asked} as a {kind.__name__}, but it is {found.name!r}, a "
                    f"{type(found).__name__}")
