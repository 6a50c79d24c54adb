"""lifecycle: async services that start, run and shut down safely.

The public API is listed in ``__all__``; see docs/concepts.md for the model.
"""

__version__ = "0.1.0"  # the one place the version is written; pyproject.toml reads it

from ._supervisor_state import SupervisorState
from .cron import cron
from .errors import ConfigError, StartupError
from .every import every
from .fallback import Fallback
from .health import Health
from .leaks import LeakCheck, LeakedTask, LeakedThread, LeakReport
from .policy import RestartPolicy
from .report import Attempt, ExitCode, FailureRecord, LifecycleReport, StageRecord, StartRecord
from .service import Service, ServiceState
from .stage import Stage
from .supervisor import Supervisor

__all__ = [
    "Attempt",
    "ConfigError",
    "ExitCode",
    "FailureRecord",
    "Fallback",
    "Health",
    "LeakCheck",
    "LeakReport",
    "LeakedTask",
    "LeakedThread",
    "LifecycleReport",
    "RestartPolicy",
    "Service",
    "ServiceState",
    "Stage",
    "StageRecord",
    "StartRecord",
    "StartupError",
    "Supervisor",
    "SupervisorState",
    "cron",
    "every",
]
