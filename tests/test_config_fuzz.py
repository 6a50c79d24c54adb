"""A configuration fuzzer: random invalid declarations raise ``ConfigError`` naming the
offender, in the constructor, and never any other exception (now or later).

Each example builds a valid app over a random dependency DAG, then breaks it in one or two
drawn ways (types, values, graphs, stage names, policies, fallback shapes). The broken app
must be refused by the constructor that received the bad value (``Stage``,
``RestartPolicy``, ``Fallback``, the service or the ``Supervisor``) with a ``ConfigError``
whose message names the culprit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lifecycle import ConfigError, Fallback, RestartPolicy, Service, Stage, Supervisor, every


class Plain(Service):
    pass


class Staged(Service):
    stop_stages = (Stage("drain", 1.0), Stage("close", 1.0))

    async def drain(self) -> None: ...
    async def close(self) -> None: ...


BAD_SECONDS = [0, -1, -0.5, math.nan, math.inf, -math.inf, "5", True, [1.0], (1, 2)]  # None: unset
SECONDS_ATTRS = ["start_timeout", "stop_timeout", "check_interval", "check_timeout",
                 "tasks_timeout", "reload_timeout"]


@dataclass
class App:
    """What the Supervisor constructor will get; ``culprit`` must appear in the error."""

    services: list[Any]
    kwargs: dict[str, Any]
    culprit: str


Broken = tuple[list[Any], dict[str, Any], str]  # services, Supervisor kwargs, culprit
Breaker = Callable[[st.DrawFn, list[Service]], Broken]


def _victim(draw: st.DrawFn, services: list[Service]) -> Service:
    return draw(st.sampled_from(services))


def bad_seconds_attribute(draw: st.DrawFn, services: list[Service]) -> Broken:
    victim = _victim(draw, services)
    setattr(victim, draw(st.sampled_from(SECONDS_ATTRS)), draw(st.sampled_from(BAD_SECONDS)))
    return services, {}, victim.name


def bad_threshold(draw: st.DrawFn, services: list[Service]) -> Broken:
    victim = _victim(draw, services)
    victim.failure_threshold = draw(st.sampled_from([0, -3, 1.5, True, "3", None]))  # type: ignore[assignment]
    return services, {}, victim.name


def unknown_dependency(draw: st.DrawFn, services: list[Service]) -> Broken:
    victim = _victim(draw, services)
    victim.depends_on = (*victim.depends_on, "ghost")
    return services, {}, victim.name


def dependency_cycle(draw: st.DrawFn, services: list[Service]) -> Broken:
    first, last = services[0], services[-1]
    first.depends_on = (*first.depends_on, last.name)
    if last is not first:
        last.depends_on = (*last.depends_on, first.name)
    return services, {}, first.name


def bad_depends_on_entry(draw: st.DrawFn, services: list[Service]) -> Broken:
    victim = _victim(draw, services)
    victim.depends_on = (*victim.depends_on, draw(st.sampled_from([5, None, "", b"db"])))  # type: ignore[arg-type]
    return services, {}, victim.name


def duplicate_name(draw: st.DrawFn, services: list[Service]) -> Broken:
    victim = _victim(draw, services)
    return [*services, Plain(name=victim.name)], {}, victim.name


def same_instance_twice(draw: st.DrawFn, services: list[Service]) -> Broken:
    victim = _victim(draw, services)
    return [*services, victim], {}, victim.name


def instance_in_a_fallback_too(draw: st.DrawFn, services: list[Service]) -> Broken:
    victim = _victim(draw, services)
    return [*services, Fallback("chain", victim, Plain(name="spare"))], {}, victim.name


def not_a_service(draw: st.DrawFn, services: list[Service]) -> Broken:
    bad = draw(st.sampled_from(["db", 5, None, Plain, object()]))
    return [*services, bad], {}, "services["


def bad_stage_list(draw: st.DrawFn, services: list[Service]) -> Broken:
    victim = _victim(draw, services)
    victim.stop_stages = draw(st.sampled_from([  # type: ignore[assignment]
        ("drain",), (Stage("ghost", 1.0),), (Stage("stop", 1.0), Stage("stop", 1.0)), ()]))
    return services, {}, victim.name


def stage_named_after_a_helper(draw: st.DrawFn, services: list[Service]) -> Broken:
    helper = draw(st.sampled_from(["sleep", "spawn", "spawn_thread", "ticks", "dependency",
                                   "request_shutdown", "wait_shutdown"]))
    victim = Plain(name="clash")
    victim.stop_stages = (Stage(helper, 1.0),)
    return [*services, victim], {}, "clash"


def stages_over_budget(draw: st.DrawFn, services: list[Service]) -> Broken:
    victim = Staged(name="heavy")
    victim.stop_stages = (Stage("drain", 8.0), Stage("close", 8.0))
    return [*services, victim], {"shutdown_timeout": 10.0}, "heavy"


def bad_supervisor_argument(draw: st.DrawFn, services: list[Service]) -> Broken:
    arg, values = draw(st.sampled_from([
        ("shutdown_timeout", [0, -1, math.nan, math.inf, "25", None, True]),
        ("drain_delay", [-1, math.nan, math.inf, "1", True]),
        ("leak_check", ["yes", 0.5, [], "no"]),
        ("name", ["", 5, None]),
        ("restart_strategy", ["one_for_some", "", None, 3]),
    ]))
    return services, {arg: draw(st.sampled_from(values))}, arg


def sync_hook(draw: st.DrawFn, services: list[Service]) -> Broken:
    hook = draw(st.sampled_from(["start", "stop", "run", "check", "recover"]))

    def plain(self: Service) -> None: ...

    cls = type("SyncHooked", (Service,), {hook: plain})
    return [*services, cls(name="sync_hooked")], {}, "sync_hooked"


def sync_every_body(draw: st.DrawFn, services: list[Service]) -> Broken:
    class SyncLoop(Service):
        @every(5.0)  # type: ignore[type-var]
        def tick(self) -> None: ...

    return [*services, SyncLoop(name="sync_loop")], {}, "sync_loop"


BREAKERS: list[Breaker] = [
    bad_seconds_attribute, bad_threshold, unknown_dependency, dependency_cycle,
    bad_depends_on_entry, duplicate_name, same_instance_twice, instance_in_a_fallback_too,
    not_a_service, bad_stage_list, stage_named_after_a_helper, stages_over_budget,
    bad_supervisor_argument, sync_hook,
    sync_every_body,
]

# Values that must be refused where the value is given (not later, not as a TypeError).
BAD_POLICIES: list[dict[str, Any]] = [
    {"backoff": 5}, {"backoff": (1.0,)}, {"backoff": (5.0, 1.0)}, {"backoff": ("a", "b")},
    {"backoff": None}, {"on": "sometimes"}, {"then": "explode"}, {"jitter": 2},
    {"jitter": "x"}, {"jitter": math.nan}, {"max_restarts": -1}, {"max_restarts": 2.5},
    {"window": 0}, {"window": "60"},
]
BAD_STAGES: list[tuple[Any, Any]] = [
    ("", 1.0), ("not an identifier", 1.0), ("tasks", 1.0), ("threads", 1.0),
    ("flush", 0), ("flush", math.nan), ("flush", "2"), (5, 1.0),
]


@st.composite
def apps(draw: st.DrawFn) -> App:
    n = draw(st.integers(1, 8))
    services: list[Service] = []
    for i in range(n):
        deps = draw(st.lists(st.sampled_from([s.name for s in services]), max_size=2, unique=True)) \
            if services else []
        cls = draw(st.sampled_from([Plain, Staged]))
        services.append(cls(name=f"s{i}", depends_on=tuple(deps)))
    breaker = draw(st.sampled_from(BREAKERS))
    built, kwargs, culprit = breaker(draw, services)
    return App(built, kwargs, culprit)


def _refused(build: Callable[[], object], culprit: str) -> None:
    try:
        build()
    except ConfigError as exc:
        message = str(exc)
    except Exception as exc:  # any other exception is a defect: it must be a ConfigError
        raise AssertionError(f"{type(exc).__name__} instead of ConfigError: {exc}") from exc
    else:
        raise AssertionError(f"accepted although {culprit!r} is invalid")
    assert culprit in message, f"the error does not name {culprit!r}: {message}"


@given(app=apps())
def test_an_invalid_app_is_refused_by_the_constructor_naming_the_culprit(app: App) -> None:
    _refused(lambda: Supervisor(app.services, **app.kwargs), app.culprit)


@given(kwargs=st.sampled_from(BAD_POLICIES))
def test_an_invalid_restart_policy_is_a_config_error_naming_the_argument(kwargs: dict[str, Any]) -> None:
    (arg,) = kwargs
    _refused(lambda: RestartPolicy(**kwargs), arg)


@given(stage=st.sampled_from(BAD_STAGES))
def test_an_invalid_stage_is_a_config_error_naming_it(stage: tuple[Any, Any]) -> None:
    name, timeout = stage
    _refused(lambda: Stage(name, timeout), repr(name) if name != "" else "stage name")


@given(depends_on=st.sampled_from(["cache", ("cache",), ["cache"]]))
def test_a_fallback_reads_one_dependency_name_as_one_name(depends_on: Any) -> None:
    chain = Fallback("db", Plain(name="primary"), depends_on=depends_on)
    assert chain.depends_on == ("cache",)
