"""``python -m lifecycle check TARGET --graph dot|mermaid``: the dependency graph, drawn."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lifecycle.cli import main

ROOT = Path(__file__).parent.parent
DEMO = "examples/telemetry_app.py:app"


def _graph(capsys: pytest.CaptureFixture[str], kind: str, target: str = DEMO) -> tuple[int, str, str]:
    code = main(["check", target, "--graph", kind])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_mermaid_graph_of_the_demo_is_the_one_in_the_docs(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _graph(capsys, "mermaid")
    assert code == 0
    doc = (ROOT / "docs" / "graph.md").read_text(encoding="utf-8")
    block = re.search(r"```mermaid\n(.*?)```", doc, re.S)
    assert block is not None, "docs/graph.md shows the demo's graph"
    assert block.group(1) == out, "regenerate: python -m lifecycle check " + DEMO + " --graph mermaid"


def test_the_mermaid_graph_shows_levels_waves_deadlines_and_the_fallback_chain(
        capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _graph(capsys, "mermaid", "tests.apps.cli_app:app")
    assert out.startswith("flowchart LR\n")
    nodes = dict(re.findall(r'(s\d+)\["([^"]*)"\]', out))
    by_name = {label.split("<br/>")[0]: (node, label) for node, label in nodes.items()}
    assert set(by_name) == {"config", "db", "api"}
    api_id, api = by_name["api"]
    assert "start: level 1" in api and "stop: wave 1, tasks 2s, drain 2s, flush 5s, close 3s" in api
    _, db = by_name["db"]
    assert "try postgres 3s" in db and "try sqlite 2s" in db and "stop: wave 2" in db
    edges = set(re.findall(r"(s\d+) --> (s\d+)", out))
    assert edges == {(by_name["config"][0], api_id), (by_name["db"][0], api_id)}


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz missing: apt-get install graphviz")
def test_graphviz_accepts_the_dot_graph(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _graph(capsys, "dot")
    assert code == 0
    svg = subprocess.run(["dot", "-Tsvg"], input=out, capture_output=True, text=True,
                         timeout=30, check=True).stdout
    for name in ("health", "db", "metrics", "sensors", "try postgres 5s", "stop: wave 2"):
        assert name in svg
    assert svg.count('class="edge"') == 2


@pytest.mark.parametrize("kind", ["dot", "mermaid"])
def test_a_cycle_is_refused_and_drawn_in_the_same_notation(
        capsys: pytest.CaptureFixture[str], kind: str) -> None:
    code, out, err = _graph(capsys, kind, "tests.apps.cli_app:cycle")
    assert code == 2
    assert "dependency cycle" in err
    assert ("digraph" in out) if kind == "dot" else out.startswith("flowchart LR")
    assert out.count("needed by") >= 2
    if kind == "dot" and shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg"], input=out, capture_output=True, text=True,
                       timeout=30, check=True)
