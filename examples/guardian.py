"""A database guardian that cannot heal itself into a loop (incident 2 in docs/architecture.md).

The guardian watches a table. Recovering it creates a new version of the table, which
takes 5 to 15 seconds to initialise; while it initialises, a scan would flag it as corrupt.
The original guardian scanned every second, recovered, scanned the new table too early,
recovered again: 4 recoveries in 5 minutes and 12 useless versions.

Here the same check runs with a grace period (a new version is not judged before it can be
ready), a cooldown after each recovery, a failure threshold, and a limit on recoveries that
do not restore health (``max_recoveries``: a recovery counts as a success only once the
checks have passed for the stable period). It always picks the newest version
deterministically (highest number).

    python examples/guardian.py                   # 20 s in real time
    python examples/guardian.py --simulate 300    # 5 simulated minutes in a moment (trio MockClock)
    python examples/guardian.py --simulate 300 --naive   # no grace/cooldown: the limit stops it
    python examples/guardian.py --simulate 3600 --broken-detector   # the check never passes:
                                                  # 3 recoveries, then the escalation, one alert
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from dataclasses import dataclass, field

import anyio

from lifecycle import Health, LifecycleReport, RestartPolicy, Service, Supervisor, every


@dataclass
class Version:
    number: int
    created_at: float
    init_seconds: float
    corrupt: bool = False


@dataclass
class Database:
    """A stand-in for the real store: versions of one table, newest wins; each new version
    takes between ``init_seconds[0]`` and ``init_seconds[1]`` to initialise (seeded)."""

    init_seconds: tuple[float, float]
    seed: int = 2
    versions: list[Version] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def create(self) -> Version:
        low, high = self.init_seconds
        version = Version(len(self.versions) + 1, anyio.current_time(), self._rng.uniform(low, high))
        self.versions.append(version)
        return version

    def newest(self) -> Version:
        return max(self.versions, key=lambda v: v.number)  # deterministic, not listing order

    def healthy(self, version: Version) -> Health:
        if version.corrupt:
            return Health(False, f"v{version.number} is corrupt")
        if anyio.current_time() - version.created_at < version.init_seconds:
            return Health(False, f"v{version.number} is not initialised yet")  # the false alarm
        return Health(True)


class Guardian(Service):
    check_interval = 1.0
    check_timeout = 0.5
    failure_threshold = 3
    grace_period = 20.0  # longer than the slowest table initialisation (15 s)
    cooldown = 30.0
    restart = RestartPolicy(max_recoveries=3, max_restarts=3, window=300.0, then="give_up")

    def __init__(self, db: Database, broken_detector: bool = False, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.db = db
        self.broken_detector = broken_detector

    async def start(self) -> None:
        self.db.create()

    async def check(self) -> Health:
        newest = self.db.newest()
        if self.broken_detector:  # a wrong detector: every version looks corrupt, forever
            return Health(False, f"detector flags v{newest.number}")
        return self.db.healthy(newest)

    async def recover(self) -> None:
        version = self.db.create()
        self.log.warning("recovered: created v%d", version.number)


class Chaos(Service):
    """Corrupts the newest version once, a minute in."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self.done = False

    @every(60.0)
    async def corrupt(self) -> object:
        self.db.newest().corrupt = True
        return every.STOP


def build(db: Database, naive: bool, broken_detector: bool = False) -> Supervisor:
    knobs = {"grace_period": 0.0, "cooldown": 0.0, "failure_threshold": 1} if naive else {}
    return Supervisor([Guardian(db, broken_detector, **knobs), Chaos(db)], name="guardian",
                      leak_check=False, log_report=False)


def app() -> Supervisor:
    """For ``python -m lifecycle check|run examples/guardian.py:app``: the guarded guardian."""
    return build(Database((5.0, 15.0)), naive=False)


async def run_for(seconds: float, naive: bool, db: Database,
                  broken_detector: bool = False) -> LifecycleReport:
    sup = build(db, naive, broken_detector)
    alerts: list[str] = []
    sup.subscribe(lambda e: alerts.append(e.kind) if e.kind == "HealthAlert" else None)
    async with sup:
        await anyio.sleep(seconds)
    sup.report.details["guardian"] = {"alerts": len(alerts), "versions": len(db.versions)}
    return sup.report


def init_range(text: str) -> tuple[float, float]:
    """``"5"`` or ``"5-15"``: seconds a new table version takes to initialise."""
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="real-time run length")
    parser.add_argument("--simulate", type=float, metavar="SECONDS",
                        help="simulated run length on trio's MockClock")
    parser.add_argument("--naive", action="store_true", help="no grace, no cooldown, threshold 1")
    parser.add_argument("--broken-detector", action="store_true",
                        help="a check that never passes: recoveries cannot help, it escalates")
    parser.add_argument("--init-seconds", type=init_range, default=(5.0, 15.0),
                        metavar="MIN[-MAX]", help="table initialisation time (default 5-15)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    db = Database(args.init_seconds)
    if args.simulate:
        from trio.testing import MockClock

        report = anyio.run(run_for, args.simulate, args.naive, db, args.broken_detector,
                           backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)})
        length = args.simulate
    else:
        report = anyio.run(run_for, args.seconds, args.naive, db, args.broken_detector)
        length = args.seconds
    facts = report.details["guardian"]
    recoveries = [r for r in report.restarts if r.where == "health"]
    print(f"{'naive' if args.naive else 'guarded'} guardian over {length:g} s: "
          f"{len(recoveries)} recoveries, {facts['versions']} table versions, "
          f"{facts['alerts']} alert(s)")
    for r in recoveries:
        print(f"  t={r.began:7.1f}s  recovery #{r.attempt}: {r.reason} -> {r.outcome}")
    state = report.health.get("guardian", {})
    if state.get("escalated"):
        print(f"escalated ({Guardian.restart.then}): {state['escalation']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
