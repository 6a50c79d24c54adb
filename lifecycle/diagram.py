"""The dependency graph as Graphviz DOT or Mermaid, with start levels, stop waves, deadlines.

``python -m lifecycle check TARGET --graph dot|mermaid`` prints it. An arrow ``a -> b``
means *b depends on a*: a starts first and stops last. Each node says when the service
starts (its level and deadline) and how it stops (its wave and stages); a Fallback lists its
candidates. A dependency cycle is drawn in the same notation, its edges in red.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from .plan import Plan, StartStep, StopStep

__all__ = ["FORMATS", "cycle_graph", "render"]


def _lines(start: StartStep, stop: StopStep) -> list[str]:
    lines = [start.service, f"start: level {start.level}, {start.start_timeout:g}s"
             + (" (optional)" if start.optional else "")]
    lines += [f"  try {name} {seconds:g}s" for name, seconds in start.candidates]
    lines.append(f"stop: wave {stop.wave}, "
                 + ", ".join(f"{name} {seconds:g}s" for name, seconds in stop.stages))
    return lines


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mermaid_text(*lines: str) -> str:
    escaped = (t.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") for t in lines)
    return '"' + "<br/>".join(escaped) + '"'


def _pairs(plan: Plan) -> list[tuple[StartStep, StopStep]]:
    stops = {s.service: s for s in plan.stop}
    return [(start, stops[start.service]) for start in plan.start]


def dot(plan: Plan) -> str:
    """Graphviz DOT: one cluster per start level, left to right in start order."""
    ids = {s.service: f"s{i}" for i, s in enumerate(plan.start)}
    out = [f"digraph {_dot_text(plan.name)} {{", "  rankdir=LR;",
           '  node [shape=box, fontname="Helvetica", fontsize=10];',
           f"  label={_dot_text(_caption(plan))}; labelloc=t;"]
    for level in sorted({s.level for s in plan.start}):
        out.append(f'  subgraph cluster_level_{level} {{ label="start level {level}"; '
                   'style=dashed;')
        for start, stop in _pairs(plan):
            if start.level == level:
                label = "\\l".join(_dot_text(line)[1:-1] for line in _lines(start, stop)) + "\\l"
                out.append(f'    {ids[start.service]} [label="{label}"];')
        out.append("  }")
    out += [f"  {ids[dep]} -> {ids[s.service]};" for s in plan.start for dep in s.depends_on]
    out.append("}")
    return "\n".join(out) + "\n"


def mermaid(plan: Plan) -> str:
    """Mermaid ``flowchart``: one subgraph per start level."""
    ids = {s.service: f"s{i}" for i, s in enumerate(plan.start)}
    out = ["flowchart LR", f"  %% {_caption(plan)}"]
    for level in sorted({s.level for s in plan.start}):
        out.append(f'  subgraph level{level}["start level {level}"]')
        for start, stop in _pairs(plan):
            if start.level == level:
                out.append(f"    {ids[start.service]}[{_mermaid_text(*_lines(start, stop))}]")
        out.append("  end")
    out += [f"  {ids[dep]} --> {ids[s.service]}" for s in plan.start for dep in s.depends_on]
    return "\n".join(out) + "\n"


def _caption(plan: Plan) -> str:
    return (f"{plan.name}: shutdown budget {plan.budget:g}s, drain {plan.drain_delay:g}s, "
            f"worst start {plan.worst_startup:g}s, worst close {plan.worst_close:g}s")


def cycle_graph(cycle: Sequence[str], kind: str) -> str:
    """A dependency cycle ``[a, b, ..., a]`` (a depends on b ...) in ``kind`` notation."""
    names = list(dict.fromkeys(cycle))
    ids = {name: f"s{i}" for i, name in enumerate(names)}
    edges = list(itertools.pairwise(cycle))
    if kind == "dot":
        out = ['digraph "cycle" {', "  rankdir=LR;", "  node [shape=box];",
               '  label="dependency cycle"; labelloc=t;']
        out += [f"  {ids[n]} [label={_dot_text(n)}];" for n in names]
        out += [f'  {ids[b]} -> {ids[a]} [color=red, label="needed by"];' for a, b in edges]
        return "\n".join([*out, "}"]) + "\n"
    out = ["flowchart LR", "  %% dependency cycle"]
    out += [f"  {ids[n]}[{_mermaid_text(n)}]" for n in names]
    out += [f"  {ids[b]} -->|needed by| {ids[a]}" for a, b in edges]
    out += [f"  linkStyle {i} stroke:red" for i in range(len(edges))]
    return "\n".join(out) + "\n"


FORMATS: dict[str, Callable[[Plan], str]] = {"dot": dot, "mermaid": mermaid}


def render(plan: Plan, kind: str) -> str:
    """The plan's graph in ``kind`` (``dot`` or ``mermaid``)."""
    return FORMATS[kind](plan)
