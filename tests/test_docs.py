"""The docs are tested: every snippet runs, every shown output matches, the deployment files
agree with the code's defaults. The runner itself is ``tests/docsnippets.py``."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docsnippets import Block, parse

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # new pages join by themselves
# Configuration a reader's shell may hold; the pages are run on embedded defaults.
UNSET = ("DATABASE_URL", "INFLUXDB_URL", "INFLUXDB_TOKEN", "INFLUXDB_ORG", "INFLUXDB_BUCKET",
         "INFLUXDB_SPOOL_DIR", "NOTIFY_SOCKET", "PGPASSWORD", "WATCHDOG_USEC")


def run_pages(*pages: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET and not k.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "tests.docsnippets", *map(str, pages)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_snippet_on_the_page_runs_as_written(page: Path, tmp_path: Path) -> None:
    proc = run_pages(page, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


BROKEN = {
    "a python block that raises": "```python\nimport json\njson.loads('{')\n```\n",
    "a name the page never defines": "```python\nSupervisor([])\n```\n",
    "a shell command that fails": "```shell\npython -c 'raise SystemExit(3)'\n```\n",
    "an output that differs": ("```python\nprint('plan for app')\n```\n\n<!-- snippet: output -->\n"
                               "```text\nplan for ingest\n```\n"),
    "a block without a language": "```\nls\n```\n",
    "a test nobody runs": "```python\ndef test_x():\n    assert False\n```\n",
    "a failing test": "<!-- snippet: pytest -->\n```python\ndef test_x():\n    assert 1 == 2\n```\n",
    "a fragment without a reason": "<!-- snippet: fragment -->\n```python\nx = 1\n```\n",
    "a systemd unit with an inline comment": ("```ini\n[Service]\nType=notify\n"
                                              "EnvironmentFile=/etc/app/env   # DATABASE_URL\n```\n"),
    "a YAML manifest that does not parse": "```yaml\nspec: [unclosed\n```\n",
    "an awaited call that fails, in a list item": ("- a step:\n\n  ```python\n  import anyio\n"
                                                   "  await anyio.to_thread.run_sync(int, 'x')\n"
                                                   "  ```\n"),
    "a signature that lost a parameter": ("<!-- snippet: signature lifecycle.LeakCheck -->\n"
                                          "```python\nLeakCheck(settle=1.0, ignore=())\n```\n"),
    "a wrong default": ("<!-- snippet: signature lifecycle.Supervisor -->\n```python\n"
                        "Supervisor(services, *, shutdown_timeout=30.0, drain_delay=0.0, "
                        "leak_check=True, name='app', log_report=True)\n```\n"),
}


@pytest.mark.parametrize("snippet", BROKEN.values(), ids=BROKEN.keys())
def test_a_page_with_a_broken_snippet_fails_naming_its_line(snippet: str, tmp_path: Path) -> None:
    page = tmp_path / "new-page.md"
    page.write_text("# A new page\n\nSome prose.\n\n" + snippet)
    proc = run_pages(page, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"FAILED {page}:" in proc.stdout


# ----- the deployment files against the code ---------------------------------------------------
def blocks(predicate: object) -> list[Block]:
    found = [b for page in PAGES for b in parse(page) if predicate(b)]  # type: ignore[operator]
    assert found, "no such block on any page"
    return found


def default(func: object, name: str) -> object:
    return inspect.signature(func).parameters[name].default  # type: ignore[arg-type]


def seconds(value: str) -> float:
    """A systemd time span as these pages write it: ``30``, ``30s``, ``2min``."""
    value = value.strip()
    if value.endswith("min"):
        return float(value[:-3]) * 60
    return float(value.rstrip("s"))


def test_the_systemd_unit_grants_the_close_budget_and_restarts_only_what_a_restart_can_fix() -> None:
    from lifecycle import ExitCode, Supervisor
    from tests.docsnippets import unit_values

    budget = default(Supervisor, "shutdown_timeout")
    for unit in blocks(lambda b: b.is_unit):
        values = {k: v[-1] for k, v in unit_values(unit.text).items()}
        assert values["Service.Type"] == "notify", unit.where  # READY=1 / STOPPING=1 / WATCHDOG=1
        assert seconds(values["Service.TimeoutStopSec"]) >= float(budget) + 5, unit.where  # type: ignore[arg-type]
        assert values["Service.Restart"] == "on-failure", unit.where
        prevented = {int(code) for code in values["Service.RestartPreventExitStatus"].split()}
        assert int(ExitCode.CONFIG_ERROR) in prevented, unit.where
        assert int(ExitCode.STARTUP_FAILED) not in prevented, unit.where  # a server may come back
        assert "python -m lifecycle run" in values["Service.ExecStart"], unit.where
        assert "--strict" in values.get("Service.ExecStartPre", "--strict"), unit.where


def test_the_kubernetes_manifest_matches_the_probes_ports_and_budget_of_the_code() -> None:
    import yaml

    from lifecycle import Supervisor
    from lifecycle.adapters.http import HealthServer

    probe_paths = {"startupProbe": "/startupz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
    manifests = [doc for b in blocks(lambda b: b.lang == "yaml") for doc in yaml.safe_load_all(b.text)
                 if isinstance(doc, dict) and doc.get("kind") == "Deployment"]
    assert manifests
    budget = float(default(Supervisor, "shutdown_timeout"))  # type: ignore[arg-type]
    for manifest in manifests:
        pod = manifest["spec"]["template"]["spec"]
        for container in pod["containers"]:
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
            assert pod["terminationGracePeriodSeconds"] >= pre_stop.get("seconds", 0) + budget + 5
            for probe, path in probe_paths.items():
                get = container[probe]["httpGet"]
                assert get["path"] == path, (probe, get)
                port = ports.get(get["port"], get["port"])
                assert port == default(HealthServer, "port"), (probe, port)
            started = container["startupProbe"]
            window = started["periodSeconds"] * started["failureThreshold"]
            assert window >= 2 * 10, "the startup probe gives less than a default start_timeout twice"


@pytest.mark.timeout(60)
def test_the_health_server_answers_each_probe_path_the_manifest_uses(tmp_path: Path) -> None:
    """Real requests to a running HealthServer: the paths are served, not 404."""
    import urllib.error
    import urllib.request

    import anyio

    from lifecycle import Supervisor
    from lifecycle.adapters.http import HealthServer

    statuses: dict[str, int] = {}

    async def probe(sup: Supervisor) -> None:
        url = sup["health"].url  # type: ignore[attr-defined]
        for path in ("/startupz", "/readyz", "/livez"):
            def get(path: str = path) -> int:
                try:
                    with urllib.request.urlopen(url + path, timeout=10) as answer:
                        return int(answer.status)
                except urllib.error.HTTPError as exc:
                    return exc.code
            statuses[path] = await anyio.to_thread.run_sync(get)

    async def main() -> None:
        async with Supervisor([HealthServer("127.0.0.1", 0)]) as sup:
            await probe(sup)

    anyio.run(main)
    assert statuses == {"/startupz": 200, "/readyz": 200, "/livez": 200}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("adapter", ["HealthServer", "InfluxWriter"])
def test_an_asyncio_only_adapter_refuses_trio_naming_itself(adapter: str, tmp_path: Path) -> None:
    """The backend table in reference.md: on trio the start fails with a clear reason."""
    import anyio

    from lifecycle import StartupError, Supervisor
    from lifecycle.adapters.http import HealthServer
    from lifecycle.adapters.influx import InfluxWriter

    service = (HealthServer("127.0.0.1", 0) if adapter == "HealthServer"
               else InfluxWriter("http://127.0.0.1:9", bucket="b", spool_path=tmp_path / "spool"))
    errors: list[str | None] = []

    async def main() -> None:
        with pytest.raises(StartupError) as failed:
            async with Supervisor([service]):
                pass
        errors.append(failed.value.report.startup[service.name].error)

    anyio.run(main, backend="trio")
    assert errors[0] is not None and f"{adapter} {service.name!r} needs asyncio" in errors[0]


def test_the_reference_names_every_public_name() -> None:
    import re

    import lifecycle

    reference = (ROOT / "docs" / "reference.md").read_text()
    missing = [name for name in lifecycle.__all__ if not re.search(rf"`{name}[`(]", reference)]
    assert missing == [], f"docs/reference.md does not document {missing}"


def test_the_readme_links_every_page() -> None:
    readme = (ROOT / "README.md").read_text()
    unlinked = [p.name for p in PAGES[1:] if f"](docs/{p.name})" not in readme]
    assert unlinked == [], f"README.md's Documentation list misses {unlinked}"


def test_the_systemd_units_pass_systemd_analyze_verify() -> None:
    import shutil

    from tests.docsnippets import verify_unit

    if shutil.which("systemd-analyze") is None or not Path("/usr/lib/systemd/system").is_dir():
        pytest.skip("systemd-analyze is not installed (Debian package `systemd`): the units "
                    "were checked for inline comments only")
    for unit in blocks(lambda b: b.is_unit):
        verify_unit(unit)  # raises SnippetError with systemd-analyze's complaint
