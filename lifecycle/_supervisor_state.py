"""The phases of a supervisor's run, in order (``Supervisor.state``)."""

from __future__ import annotations

import enum


class SupervisorState(str, enum.Enum):
    NEW = "new"  # constructed; validated; nothing started
    STARTING = "starting"  # the start plan runs
    RUNNING = "running"  # every required service started; serving until shutdown
    STOPPING = "stopping"  # the close plan runs
    STOPPED = "stopped"  # closed; the report is final; a supervisor runs once
