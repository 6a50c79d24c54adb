"""Every configuration error is raised in the constructor and names the offender."""

from __future__ import annotations

import pytest

from lifecycle import ConfigError, Fallback, RestartPolicy, Service, Stage, Supervisor


class A(Service):
    pass


class Staged(Service):
    stop_stages = (Stage("drain", 10.0), Stage("close", 10.0))

    async def drain(self) -> None: ...
    async def close(self) -> None: ...


@pytest.mark.parametrize(("services", "kwargs", "match"), [
    ([A(name="x"), A(name="x")], {}, "two services are named 'x'"),
    ([A(name="x", depends_on=("nope",))], {}, "'x' depends on 'nope', which is not in"),
    ([A(name="a", depends_on=("b",)), A(name="b", depends_on=("c",)), A(name="c", depends_on=("a",))],
     {}, "dependency cycle: a -> b -> c -> a"),
    ([A(name="a", depends_on=("a",))], {}, "service 'a' depends on itself"),
    ([A(name="a", start_timeout=0)], {}, "service 'a': start_timeout must be positive"),
    ([A(name="a", start_timeout=float("inf"))], {}, "service 'a': start_timeout must be positive and finite"),
    ([A(name="a", stop_timeout=-1)], {}, "service 'a': stop_timeout"),
    ([A(name="a", stop_timeout="5")], {}, "service 'a': stop_timeout must be a number"),
    ([A()], {"shutdown_timeout": 0}, "shutdown_timeout must be positive"),
    ([A()], {"shutdown_timeout": float("nan")}, "shutdown_timeout"),
    ([A()], {"drain_delay": -1}, "drain_delay"),
    ([A()], {"drain_delay": 30.0, "shutdown_timeout": 25.0}, "drain_delay=30"),
    ([Staged(name="big")], {"shutdown_timeout": 15.0}, "service 'big': stop stages add up to 20 s"),
    ([A(name="a", stop_timeout=30)], {}, "service 'a': stop stages add up to 30 s"),
    (["not a service"], {}, r"services\[0\] is 'not a service'"),
    ([Fallback("db", A(name="p"), Staged(name="big"))], {"shutdown_timeout": 15.0},
     r"service 'db' \(candidate 'big'\): stop stages add up to 20 s"),
])
def test_config_errors_name_the_offender(services: list[Service], kwargs: dict[str, float],
                                         match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Supervisor(services, **kwargs)  # type: ignore[arg-type]


def test_stage_without_method() -> None:
    class NoMethod(Service):
        stop_stages = (Stage("flush", 1.0),)

    with pytest.raises(ConfigError, match="service 'no_method': stage 'flush' has no method flush"):
        Supervisor([NoMethod()])


def test_stage_and_policy_validation() -> None:
    with pytest.raises(ConfigError, match="Stage 'x' must be positive"):
        Stage("x", 0)
    with pytest.raises(ConfigError, match="reserved"):
        Stage("tasks", 1)
    with pytest.raises(ConfigError, match=r"on=\.\.\."):
        RestartPolicy(on="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_restarts"):
        RestartPolicy(max_restarts=-1)
    with pytest.raises(ConfigError, match="Fallback 'db' has no candidates"):
        Fallback("db")
    with pytest.raises(ConfigError, match="two candidates are named 'a'"):
        Fallback("db", A(name="a"), A(name="a"))


def test_names_default_to_snake_case_and_overrides_apply() -> None:
    class HTTPServerThing(Service):
        start_timeout = 3.0

    svc = HTTPServerThing(stop_timeout=2.0, depends_on="db")
    assert svc.name == "http_server_thing"
    assert (svc.start_timeout, svc.stop_timeout, svc.depends_on) == (3.0, 2.0, ("db",))
    assert HTTPServerThing.stop_timeout == 5.0  # the class default is untouched
