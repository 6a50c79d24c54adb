"""The phase of one service inside a running supervisor, and the public state it shows.

A runtime is always in exactly one :class:`Phase`, changed only by
``ServiceRuntime._enter``, which also sets the public ``Service.state`` of the active
service (``PUBLIC``; a failure shows ``FAILED`` over any phase until the next attempt).
``NEXT`` lists every transition the engine makes; a change to it is a change to the
engine (docs/architecture.md, "Invariants").
"""

from __future__ import annotations

import enum
from typing import Final

from .service import ServiceState


class Phase(enum.Enum):
    NEW = "new"  # no start tried (a start skipped for a failed dependency stays here)
    STARTING = "starting"  # the first start: one candidate's start() is in flight
    START_FAILED = "start failed"  # no candidate started: nothing runs, nothing to close
    RUNNING = "running"  # started: run(), loops and the health monitor may run
    STOPPING = "stopping"  # a close (for good, or before a restart) winds it down
    STOPPED_FOR_RESTART = "stopped for restart"  # its stop stages ran; a start comes next
    RESTARTING = "restarting"  # a restart's start() is in flight
    STOPPED = "stopped"  # closed for good


#: What ``Service.state`` shows in each phase (``FAILED`` instead, after a failure).
PUBLIC: Final = {
    Phase.NEW: ServiceState.NEW, Phase.STARTING: ServiceState.STARTING,
    Phase.START_FAILED: ServiceState.FAILED, Phase.RUNNING: ServiceState.RUNNING,
    Phase.STOPPING: ServiceState.STOPPING, Phase.STOPPED_FOR_RESTART: ServiceState.STOPPED,
    Phase.RESTARTING: ServiceState.STARTING, Phase.STOPPED: ServiceState.STOPPED,
}

#: Every transition (besides staying in a phase, which a failure or a give-up does).
NEXT: Final[dict[Phase, frozenset[Phase]]] = {
    Phase.NEW: frozenset({Phase.STARTING, Phase.START_FAILED}),  # (shutdown before any try)
    Phase.STARTING: frozenset({Phase.RUNNING, Phase.START_FAILED}),
    Phase.START_FAILED: frozenset(),
    Phase.RUNNING: frozenset({Phase.STOPPING}),
    Phase.STOPPING: frozenset({Phase.STOPPED, Phase.STOPPED_FOR_RESTART}),
    Phase.STOPPED_FOR_RESTART: frozenset({Phase.RESTARTING, Phase.STOPPING}),
    Phase.RESTARTING: frozenset({Phase.RUNNING, Phase.STOPPED_FOR_RESTART, Phase.STOPPING}),
    Phase.STOPPED: frozenset(),
}

#: Phases in which the service has started at least once (it is resolved, and closed).
STARTED: Final = frozenset({Phase.RUNNING, Phase.STOPPING, Phase.STOPPED_FOR_RESTART,
                            Phase.RESTARTING, Phase.STOPPED})
#: Phases in which its stop stages already ran for a restart: the close skips them.
STAGES_RAN: Final = frozenset({Phase.STOPPED_FOR_RESTART, Phase.RESTARTING})
