"""What the start and close plans (``_starting``, ``_closing``) use of their supervisor.

They are the supervisor's own steps, kept in their own modules; this Protocol names the
state they share with it, so that they need not import ``lifecycle.supervisor`` (which
imports them): no import cycle in ``lifecycle/``, type-checking imports included.
``Supervisor`` satisfies it (mypy checks it where the supervisor calls them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ._core import Core

if TYPE_CHECKING:
    import anyio

    from ._runtime import ServiceRuntime
    from ._supervisor_state import SupervisorState
    from .leaks import LeakCheck
    from .reload import Reloader
    from .service import Service
    from .strategy import Cascades


class Plans(Core, Protocol):
    """A supervisor as its start and close plans see it: a runtime's ``Core``, and the
    state below (the plans write the four fields marked so; the rest they read)."""

    state: SupervisorState  # written: STARTING, RUNNING, STOPPING, STOPPED
    _leaks: LeakCheck | None  # written: the leak check begun at the start, if any
    _closed: bool  # written: the close ran (it runs once)
    _draining: bool  # written: True within drain_delay

    @property
    def shutdown_timeout(self) -> float: ...
    @property
    def drain_delay(self) -> float: ...
    @property
    def cascades(self) -> Cascades: ...
    @property
    def reloads(self) -> Reloader: ...
    @property
    def _by_name(self) -> dict[str, Service]: ...  # the declared services, validated
    @property
    def _dependents(self) -> dict[str, list[str]]: ...  # who must stop before each service
    @property
    def _runtimes(self) -> dict[str, ServiceRuntime]: ...  # one per service, made by _prepare()
    @property
    def _requested(self) -> anyio.Event | None: ...  # set when shutdown is requested
    @property
    def _forced(self) -> anyio.Event | None: ...  # set by a second signal
    @property
    def _leak_option(self) -> LeakCheck | bool | None: ...  # Supervisor(leak_check=...)
    @property
    def _secrets(self) -> list[str]: ...  # redacted from the leak report
    @property
    def _detach(self) -> list[Callable[[], object]]: ...  # the run's observers

    def _prepare(self) -> None: ...
    def _check_handlers(self) -> None: ...
