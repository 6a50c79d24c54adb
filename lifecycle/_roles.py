"""What a service, a Fallback or an observer may use of its supervisor: ``SupervisorView``.

A Protocol, so that the modules below the supervisor name it in their type hints without
importing ``lifecycle.supervisor`` (which imports them): no import cycle in ``lifecycle/``,
type-checking imports included. ``Supervisor`` satisfies it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from ._supervisor_state import SupervisorState
    from .events import Event
    from .report import LifecycleReport

S_co = TypeVar("S_co", covariant=True)


class SupervisorView(Protocol[S_co]):
    """The public side of a running supervisor (``Service.supervisor`` returns it, as a
    ``SupervisorView[Service]``: generic in the service type only so that this module needs
    nothing of ``lifecycle.service``, which needs this one)."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> SupervisorState: ...
    @property
    def report(self) -> LifecycleReport: ...
    @property
    def blocking_threshold(self) -> float | None: ...
    @property
    def ready(self) -> bool: ...
    @property
    def alive(self) -> bool: ...
    @property
    def started(self) -> bool: ...
    @property
    def shutdown_requested(self) -> bool: ...
    @property
    def services(self) -> Sequence[S_co]: ...

    def resolve(self, name: str) -> S_co: ...
    def health(self) -> dict[str, Any]: ...  # JSON, as Supervisor.health() returns it
    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]: ...
    def emit(self, event: Event) -> None: ...
    def request_shutdown(self, reason: str = ..., *, failed: bool = ...) -> None: ...
    def request_reload(self, reason: str = ...) -> None: ...
