"""The writer's knobs live in one validated ``InfluxSettings``; the packages keep their layers
(the spool at the bottom, knowing nothing of InfluxDB)."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lifecycle import ConfigError, Supervisor
from lifecycle.adapters.influx import InfluxSettings, InfluxWriter
from lifecycle.adapters.spool import Spool

ADAPTERS = Path(__file__).resolve().parent.parent / "adapters"

BAD = [
    ("batch_size", 0), ("batch_size", 2.5), ("max_buffer_points", -1),
    ("max_buffer_bytes", 0), ("max_attempts", 0), ("breaker_threshold", True),
    ("spool_max_bytes", 0), ("max_in_flight", 0), ("flush_interval", 0.0),
    ("flush_interval", float("nan")), ("timeout", -1.0), ("connect_timeout", float("inf")),
    ("flush_timeout", 0), ("spool_timeout", -2.0), ("close_timeout", "3"),
    ("commit_interval", 61.0), ("commit_interval", 0), ("when_full", "block"),
    ("durability", "tape"), ("precision", "ps"), ("spool_fsync", "sometimes"),
    ("retry_backoff", 5.0), ("retry_backoff", (2.0, 1.0)), ("retry_backoff", (0.0, 1.0)),
    ("retry_jitter", 2.0), ("breaker_reset", (5.0,)), ("breaker_reset", (60.0, 5.0)),
]


@pytest.mark.parametrize(("knob", "value"), BAD, ids=[f"{k}={v!r}" for k, v in BAD])
def test_every_invalid_knob_is_a_config_error_naming_it_before_anything_opens(
        tmp_path: Path, knob: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=knob):
        InfluxSettings(**{knob: value})
    with pytest.raises(ConfigError, match=rf"InfluxWriter 'metrics': .*{knob}"):
        InfluxWriter(None, name="metrics", spool_path=tmp_path / "spool", **{knob: value})
    assert not (tmp_path / "spool").exists()  # nothing was created


def test_a_batch_larger_than_the_buffer_is_refused_naming_both_knobs() -> None:
    with pytest.raises(ConfigError, match="batch_size=500 is above max_buffer_points=100"):
        InfluxSettings(batch_size=500, max_buffer_points=100)


def test_the_keyword_arguments_are_the_settings_fields_with_the_same_defaults() -> None:
    params = inspect.signature(InfluxWriter).parameters
    keywords = {name: p.default for name, p in params.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and name != "settings"}
    defaults = InfluxSettings()
    assert keywords == {knob: getattr(defaults, knob) for knob in InfluxSettings.knobs()}


def test_keywords_and_a_settings_object_configure_the_same_writer(tmp_path: Path) -> None:
    knobs: dict[str, Any] = {"batch_size": 10, "max_buffer_points": 100,
                             "when_full": "drop_oldest", "flush_timeout": 3.0}
    by_keywords = InfluxWriter(None, spool_path=tmp_path / "a", **knobs)
    settings = InfluxSettings(spool_path=tmp_path / "b", **knobs)
    by_object = InfluxWriter(None, settings=settings)
    assert by_object.settings is settings
    assert by_keywords.settings == InfluxSettings(spool_path=tmp_path / "a", **knobs)
    for writer in (by_keywords, by_object):
        writer.write_many([f"m v={i}i {i}" for i in range(150)])
        assert (writer.stats.dropped, len(writer._buf)) == (50, 100)
        assert {s.name: s.timeout for s in writer.stages()}["flush"] == 3.0
        writer.spool_store.close()
    assert by_object.spool_store.directory == tmp_path / "b"


def test_from_env_takes_the_spool_directory_unless_the_settings_name_one(tmp_path: Path) -> None:
    env = {"INFLUXDB_SPOOL_DIR": str(tmp_path / "env")}
    plain = InfluxWriter.from_env(environ=env, settings=InfluxSettings(batch_size=10,
                                                                         max_buffer_points=100))
    assert (plain.spool_store.directory, plain.settings.batch_size) == (tmp_path / "env", 10)
    named = InfluxWriter.from_env(environ=env, settings=InfluxSettings(spool_path=tmp_path / "s"))
    assert named.spool_store.directory == tmp_path / "s"
    assert InfluxWriter.from_env(environ=env).spool_store.directory == tmp_path / "env"


def test_a_knob_given_both_ways_with_different_values_is_refused(tmp_path: Path) -> None:
    settings = InfluxSettings(spool_path=tmp_path, batch_size=10, max_buffer_points=100)
    with pytest.raises(ConfigError, match="batch_size given both as keyword"):
        InfluxWriter(None, settings=settings, batch_size=20)
    same = InfluxWriter(None, settings=settings, batch_size=10)  # the same value: no doubt
    assert same.settings is settings
    with pytest.raises(ConfigError, match="settings must be an InfluxSettings, got dict"):
        InfluxWriter(None, settings={"batch_size": 10})  # type: ignore[arg-type]


def test_the_flush_deadline_is_the_stage_named_flush_as_the_supervisor_fitted_it(
        tmp_path: Path) -> None:
    fitted = InfluxWriter(None, spool_path=tmp_path / "a")
    assert fitted.flush_deadline == 5.0
    Supervisor([fitted], shutdown_timeout=4)  # the default deadlines shrink to fit 4 s
    assert fitted.flush_deadline == next(s.timeout for s in fitted.stages() if s.name == "flush")
    assert fitted.flush_deadline < 5.0
    given = InfluxWriter(None, spool_path=tmp_path / "b", flush_timeout=2.5)
    assert given.flush_deadline == 2.5


def imported_from(path: Path) -> set[str]:
    """The modules ``path`` imports, relative ones resolved against ``lifecycle.adapters``."""
    package = ["lifecycle", "adapters", *path.parent.relative_to(ADAPTERS).parts]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            names.add(".".join([*base, *(node.module or "").split(".")]).strip("."))
    return names


def test_the_spool_package_imports_nothing_of_influx() -> None:
    for module in sorted((ADAPTERS / "spool").glob("*.py")):
        assert not [name for name in imported_from(module) if "influx" in name], module.name
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, lifecycle.adapters.spool;"
         "print(sorted(m for m in sys.modules if 'influx' in m))"],
        capture_output=True, text=True, check=True, timeout=60)
    assert loaded.stdout.strip() == "[]"


def test_the_deliverer_takes_the_spools_value_types_never_the_store() -> None:
    tree = ast.parse((ADAPTERS / "influx" / "_delivery.py").read_text())
    from_spool = {alias.name for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module == "spool"
                  for alias in node.names}
    assert from_spool == {"Batch", "Rejected"}  # what its docstring says it takes


def test_the_spool_has_no_test_only_api() -> None:
    assert not hasattr(Spool, "ack") and not hasattr(Spool, "append")
