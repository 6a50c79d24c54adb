"""The start and close plans of a supervisor, worked out without starting anything.

``python -m lifecycle check`` prints this. The supervisor's constructor already rejected
what cannot work (``ConfigError``); the plan shows what *will* happen, and warns about
what is legal but risky: a chain of stop stages that, in the worst case, needs more than
the shutdown budget (the last services' stages would then be cut short or skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .graph import dependents, levels

if TYPE_CHECKING:
    from .service import Service
    from .supervisor import Supervisor

__all__ = ["Plan", "StartStep", "StopStep", "plan_of"]


@dataclass
class StartStep:
    service: str
    level: int
    start_timeout: float
    optional: bool
    depends_on: list[str]
    candidates: list[tuple[str, float]]  # a Fallback's chain, each with its own deadline
    worst_ready: float  # worst case: seconds after startup began until it is running


@dataclass
class StopStep:
    service: str
    wave: int  # 1: nothing depends on it, stops first; n: after everything in waves < n
    after: list[str]  # the services that must have stopped first (its dependents)
    stages: list[tuple[str, float]]  # "tasks" first when run(), loops or tasks_timeout exist
    worst_begin: float  # worst case: seconds after shutdown began
    worst_end: float


@dataclass
class Plan:
    name: str
    budget: float
    drain_delay: float
    start: list[StartStep]
    stop: list[StopStep]
    worst_startup: float
    startup_path: list[str]
    worst_close: float
    close_path: list[str]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        lines = [f"plan for {self.name!r}: {len(self.start)} services, shutdown budget "
                 f"{self.budget:g} s, drain_delay {self.drain_delay:g} s", "",
                 "start: each service as soon as its dependencies run (independent ones "
                 "concurrently)"]
        rows = [("level", "service", "deadline", "ready by", "")]
        for s in self.start:
            how = ("fallback " + " -> ".join(f"{c} {t:g}s" for c, t in s.candidates)
                   if s.candidates else "")
            after = f"after {', '.join(s.depends_on)}" if s.depends_on else ""
            rows.append((str(s.level), s.service, f"{s.start_timeout:g}s", f"{s.worst_ready:g}s",
                         "; ".join(x for x in (after, how, "optional" if s.optional else "") if x)))
        lines += _columns(rows)
        lines.append(f"  worst case: running {self.worst_startup:g} s after start "
                     f"({' -> '.join(self.startup_path)})")
        lines += ["", "stop: after everything that depends on it has stopped; each stage under "
                      "its own deadline"]
        rows = [("wave", "service", "stages", "worst case", "")]
        if self.drain_delay:
            rows.append(("0", "(drain)", f"readiness false, wait {self.drain_delay:g}s",
                         f"0 -> {self.drain_delay:g}s", ""))
        for st in self.stop:
            rows.append((str(st.wave), st.service, ", ".join(f"{n} {t:g}s" for n, t in st.stages),
                         f"{st.worst_begin:g} -> {st.worst_end:g}s",
                         "OVER BUDGET" if st.worst_end > self.budget else ""))
        lines += _columns(rows)
        lines.append(f"  worst case: {self.worst_close:g} s of the {self.budget:g} s budget"
                     + (f" ({' -> '.join(self.close_path)})" if self.close_path else ""))
        if self.warnings:
            lines += ["", "warnings"] + [f"  - {w}" for w in self.warnings]
        return "\n".join(lines)


def _columns(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))).rstrip()
            for r in rows]


def _reserved(member: Service) -> list[tuple[str, float]]:
    # the inherited no-op stop() takes no time (unless stop_timeout was set: see fit_stages)
    return [(s.name, float(s.timeout) if member.does_work(s) or not s.default else 0.0)
            for s in member.stages()]


def _stop_stages(svc: Service) -> list[tuple[str, float]]:
    """The close of ``svc`` (a Fallback's: its longest-closing candidate's)."""
    owner = max(svc.members(), key=lambda m: sum(t for _, t in _reserved(m)))
    stages = _reserved(owner)
    members = svc.members()
    if any(m.has_run or m.loops or m.tasks_timeout is not None for m in members):
        # run()/loops get tasks_timeout, or else the first stage's time
        stages.insert(0, ("tasks", max(m.tasks_deadline() for m in members)))
    return stages


def _shrunk(svc: Service, budget: float) -> str | None:
    """A note when default stage deadlines were shrunk to fit the budget."""
    changes = []
    for member in svc.members():
        declared = {s.name: s.timeout for s in member._declared_stages()}
        for stage in member.stages():
            if stage.timeout < declared.get(stage.name, stage.timeout) and member.does_work(stage):
                changes.append(f"{stage.name} {declared[stage.name]:g} -> {stage.timeout:.3g} s")
    if not changes:
        return None
    return (f"service {svc.name!r}: default stage deadlines shrunk to fit the {budget:g} s "
            f"budget: {', '.join(changes)}")


def plan_of(sup: Supervisor) -> Plan:
    """The plan of ``sup`` (already validated by its constructor)."""
    by_name = {s.name: s for s in sup.services}
    level_of = {name: i for i, names in enumerate(levels(by_name)) for name in names}

    ready: dict[str, float] = {}
    ready_via: dict[str, str | None] = {}
    for name in sorted(by_name, key=level_of.__getitem__):
        svc = by_name[name]
        prior = max(svc.depends_on, key=lambda d: ready[d], default=None)
        ready_via[name] = prior
        ready[name] = (ready[prior] if prior else 0.0) + float(svc.start_timeout)
    start = [StartStep(name, level_of[name], float(svc.start_timeout), bool(svc.optional),
                       list(svc.depends_on),
                       [(c.name, float(c.start_timeout)) for c in svc.members()]
                       if svc.members() != (svc,) else [],
                       ready[name]) for name, svc in by_name.items()]
    start.sort(key=lambda s: (s.level, list(by_name).index(s.service)))

    after = dependents(by_name)
    wave: dict[str, int] = {}
    begin: dict[str, float] = {}
    end: dict[str, float] = {}
    end_via: dict[str, str | None] = {}

    def visit(name: str) -> None:
        if name in wave:
            return
        for d in after[name]:
            visit(d)
        wave[name] = 1 + max((wave[d] for d in after[name]), default=0)
        last = max(after[name], key=lambda d: end[d], default=None)
        end_via[name] = last
        begin[name] = end[last] if last else float(sup.drain_delay)
        end[name] = begin[name] + sum(t for _, t in _stop_stages(by_name[name]))

    for name in by_name:
        visit(name)
    stop = [StopStep(name, wave[name], list(after[name]), _stop_stages(by_name[name]),
                     begin[name], end[name]) for name in by_name]
    stop.sort(key=lambda s: (s.wave, list(by_name).index(s.service)))

    def path(last: str | None, via: dict[str, str | None]) -> list[str]:
        out: list[str] = []
        while last is not None:
            out.append(last)
            last = via[last]
        return out

    slowest = max(ready, key=ready.__getitem__, default=None)
    final = max(end, key=end.__getitem__, default=None)
    plan = Plan(sup.name, float(sup.shutdown_timeout), float(sup.drain_delay), start, stop,
                ready[slowest] if slowest else 0.0, path(slowest, ready_via)[::-1],
                end[final] if final else float(sup.drain_delay), path(final, end_via)[::-1])
    plan.warnings += [note for svc in by_name.values() if (note := _shrunk(svc, plan.budget))]
    over = [s for s in stop if s.worst_end > plan.budget]
    if over:
        plan.warnings.append(
            f"in the worst case the close needs {plan.worst_close:g} s, more than the "
            f"{plan.budget:g} s budget: stages of {', '.join(s.service for s in over)} would be "
            "cut short or skipped (raise shutdown_timeout or lower their stage deadlines)")
    return plan
