"""A database guardian that cannot heal itself into a loop (incident 2 in docs/architecture.md).

The guardian watches a table. Recovering it creates a new version of the table, which
takes a few seconds to initialise; while it initialises, a scan would flag it as corrupt.
The original guardian scanned every second, recovered, scanned the new table too early,
recovered again: 4 recoveries in 5 minutes and 12 useless versions.

Here the same check runs with a grace period (a new version is not judged before it can be
ready), a cooldown after each recovery, a failure threshold, and a restart budget shared
by all recoveries. It always picks the newest version deterministically (highest number).

    python examples/guardian.py                   # 20 s in real time
    python examples/guardian.py --simulate 300    # 5 simulated minutes in a moment (trio MockClock)
    python examples/guardian.py --simulate 300 --naive   # no grace/cooldown: the budget stops it
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field

import anyio

from lifecycle import Health, LifecycleReport, RestartPolicy, Service, Supervisor, every


@dataclass
class Version:
    number: int
    created_at: float
    corrupt: bool = False


@dataclass
class Database:
    """A stand-in for the real store: versions of one table, newest wins."""

    init_seconds: float
    versions: list[Version] = field(default_factory=list)

    def create(self) -> Version:
        version = Version(len(self.versions) + 1, anyio.current_time())
        self.versions.append(version)
        return version

    def newest(self) -> Version:
        return max(self.versions, key=lambda v: v.number)  # deterministic, not listing order

    def healthy(self, version: Version) -> Health:
        if version.corrupt:
            return Health(False, f"v{version.number} is corrupt")
        if anyio.current_time() - version.created_at < self.init_seconds:
            return Health(False, f"v{version.number} is not initialised yet")  # the false alarm
        return Health(True)


class Guardian(Service):
    check_interval = 1.0
    check_timeout = 0.5
    failure_threshold = 3
    grace_period = 10.0
    cooldown = 30.0
    restart = RestartPolicy(max_restarts=3, window=300.0, then="give_up")

    def __init__(self, db: Database, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.db = db

    async def start(self) -> None:
        self.db.create()

    async def check(self) -> Health:
        return self.db.healthy(self.db.newest())

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


def build(db: Database, naive: bool) -> Supervisor:
    knobs = {"grace_period": 0.0, "cooldown": 0.0, "failure_threshold": 1} if naive else {}
    return Supervisor([Guardian(db, **knobs), Chaos(db)], name="guardian", leak_check=False,
                      log_report=False)


def app() -> Supervisor:
    """For ``python -m lifecycle check|run examples/guardian.py:app``: the guarded guardian."""
    return build(Database(5.0), naive=False)


async def run_for(seconds: float, naive: bool, db: Database) -> LifecycleReport:
    sup = build(db, naive)
    alerts: list[str] = []
    sup.subscribe(lambda e: alerts.append(e.kind) if e.kind == "HealthAlert" else None)
    async with sup:
        await anyio.sleep(seconds)
    sup.report.details["guardian"] = {"alerts": len(alerts), "versions": len(db.versions)}
    return sup.report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="real-time run length")
    parser.add_argument("--simulate", type=float, metavar="SECONDS",
                        help="simulated run length on trio's MockClock")
    parser.add_argument("--naive", action="store_true", help="no grace, no cooldown, threshold 1")
    parser.add_argument("--init-seconds", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    db = Database(args.init_seconds)
    if args.simulate:
        from trio.testing import MockClock

        report = anyio.run(run_for, args.simulate, args.naive, db, backend="trio",
                           backend_options={"clock": MockClock(autojump_threshold=0)})
        length = args.simulate
    else:
        report = anyio.run(run_for, args.seconds, args.naive, db)
        length = args.seconds
    facts = report.details["guardian"]
    recoveries = [r for r in report.restarts if r.where == "health"]
    print(f"{'naive' if args.naive else 'guarded'} guardian over {length:g} s: "
          f"{len(recoveries)} recoveries, {facts['versions']} table versions, "
          f"{facts['alerts']} alert(s)")
    for r in recoveries:
        print(f"  t={r.began:7.1f}s  recovery #{r.attempt}: {r.reason} -> {r.outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
