"""Checks of one service's declarations; ``graph.validate`` checks the set of them.

Every error is a :class:`ConfigError` that names the service, raised before anything starts.
"""

from __future__ import annotations

import functools
import inspect
import types
import weakref

from .errors import ConfigError
from .policy import RestartPolicy
from .service import Service
from .stage import Stage, check_timeout, plain_timeout

HOOKS = ("start", "run", "stop", "check")


def validate_service(service: Service) -> None:
    """Raise ConfigError naming ``service`` for anything wrong with its declarations.

    Messages are built only for what is wrong: a supervisor of a thousand services checks
    every one of them, and formatting the names of valid settings was most of that cost.
    """
    if not hasattr(service, "_stop_token"):
        raise ConfigError(f"{type(service).__name__} {getattr(service, 'name', '')!r}: its "
                          "__init__ did not call super().__init__()")
    who = f"service {service.name!r}"
    if not isinstance(service.name, str) or not service.name:
        raise ConfigError(f"{type(service).__name__} has an empty name")
    if not all(isinstance(d, str) and d for d in service.depends_on):
        raise ConfigError(f"{who}: depends_on must hold service names, got {service.depends_on!r}")
    members = getattr(service, "members", None)
    if "members" in vars(service) or not inspect.ismethod(members):
        raise ConfigError(f"{who}: 'members' is Service.members() (the services it consists "
                          "of): give your attribute another name")
    if service.name in service.depends_on:
        raise ConfigError(f"{who} depends on itself")
    for attr in ("start_timeout", "stop_timeout", "check_interval", "check_timeout",
                 "grace_period", "cooldown", "reload_timeout"):
        value = getattr(service, attr)
        if not plain_timeout(value) and not (attr in ("grace_period", "cooldown") and value == 0):
            check_timeout(value, f"{who}: {attr}")  # zero grace or cooldown is allowed
    if service.tasks_timeout is not None and not plain_timeout(service.tasks_timeout):
        check_timeout(service.tasks_timeout, f"{who}: tasks_timeout")
    if service.restart_strategy is not None:
        from .strategy import check_strategy

        check_strategy(service.restart_strategy, f"{who}: restart_strategy")
    if service.on_reload_failure != "continue":  # the default needs no check (nor import)
        from .reload import check_on_reload_failure

        check_on_reload_failure(service.on_reload_failure, f"{who}: on_reload_failure")
    if service.has_reload and not inspect.iscoroutinefunction(service.reload):
        raise ConfigError(f"{who}: reload() must be an async def")
    threshold = service.failure_threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ConfigError(f"{who}: failure_threshold must be an int >= 1, got {threshold!r}")
    if not isinstance(service.restart, RestartPolicy):
        raise ConfigError(f"{who}: restart must be a RestartPolicy, got {service.restart!r}")
    if service.members() != (service,):  # a Fallback: its candidates are what runs
        for candidate in service.members():
            validate_service(candidate)
        return
    _check_hooks(service, who)
    stages = service._declared_stages()
    if not stages:
        raise ConfigError(f"{who} has no stop stages")
    seen: set[str] = set()
    for stage in stages:
        if not isinstance(stage, Stage):
            raise ConfigError(f"{who}: stop_stages must hold Stage objects, got {stage!r}")
        if stage.name in seen:
            raise ConfigError(f"{who}: stage {stage.name!r} appears twice")
        seen.add(stage.name)
        if stage.name != "stop" and hasattr(Service, stage.name):
            raise ConfigError(f"{who}: stage {stage.name!r} is named after Service.{stage.name}, "
                              "which is not a stop stage; give the stage's method another name")
        if not callable(getattr(service, stage.name, None)):
            raise ConfigError(f"{who}: stage {stage.name!r} has no method {stage.name}()")
        _require_async(service, stage.name, who, "stage method ")


#: Classes whose hooks and ``@every`` methods were found async, with the functions that
#: were checked: another instance of the class that shadows none of them by an instance
#: attribute has the same ones (compared by identity: a class patched since is checked again).
_ASYNC_HOOKS: weakref.WeakKeyDictionary[type[Service], tuple[object, ...]] = \
    weakref.WeakKeyDictionary()


def _check_hooks(service: Service, who: str) -> None:
    cls = type(service)
    names = (*HOOKS, *service.loops)
    shadowed = not vars(service).keys().isdisjoint(names)
    functions = tuple(getattr(cls, name, None) for name in names)
    if not shadowed and _ASYNC_HOOKS.get(cls) == functions:
        return
    for hook in HOOKS:
        _require_async(service, hook, who, "")
    for attr in service.loops:
        _require_async(service, attr, who, "@every method ")
    if not shadowed:
        _ASYNC_HOOKS[cls] = functions


def _require_async(service: Service, attr: str, who: str, kind: str) -> None:
    fn = getattr(service, attr, None)
    if fn is not None and not _is_async(getattr(fn, "__func__", fn)):
        raise ConfigError(f"{who}: {kind}{attr}() must be an async def (it is "
                          f"{type(fn).__name__} {getattr(fn, '__qualname__', fn)!r})")


def _is_async(fn: object) -> bool:
    """``inspect.iscoroutinefunction``, remembered for plain functions (the same few
    methods are checked on every instance of a class)."""
    if type(fn) is types.FunctionType:
        return _async_function(fn)
    return inspect.iscoroutinefunction(fn)


@functools.lru_cache(maxsize=1024)
def _async_function(fn: types.FunctionType) -> bool:
    return inspect.iscoroutinefunction(fn)


def check_leak_option(value: object) -> None:
    """``Supervisor(leak_check=...)``: True, False (or None), or a configured LeakCheck."""
    from .leaks import LeakCheck

    if value is not True and value is not False and value is not None \
            and not isinstance(value, LeakCheck):
        raise ConfigError(f"Supervisor leak_check must be True, False or a LeakCheck, got {value!r}")
