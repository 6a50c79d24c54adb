"""``python -m lifecycle run|check TARGET``: run an app, or print its plan without running it.

TARGET is ``package.module:attribute`` or ``path/to/file.py:attribute`` (the attribute
defaults to ``app``); the attribute is a :class:`Supervisor` or a function returning one.

Exit codes: ``run`` exits with the report's code (0 clean, 1 startup failed, 3 a service
failed while running, 4 unclean shutdown, 5 leaks, 128+N forced by a second signal N; see
``lifecycle/report.py``). Both commands exit 2 when the command line is wrong or the app
cannot be built (``ConfigError`` — the message names the offender —, an import error, a
target that is not a Supervisor); ``check --strict`` also exits 2 when the plan has warnings.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from .diagram import FORMATS, cycle_graph, render
from .errors import ConfigError
from .events import Event, Stopped
from .logs import configure
from .plan import plan_of
from .report import ExitCode, LifecycleReport
from .supervisor import Supervisor
from .trace import write_trace

log = logging.getLogger("lifecycle.cli")

USAGE_ERROR = int(ExitCode.CONFIG_ERROR)


class LoadError(Exception):
    """The target could not be turned into a Supervisor (exit code 2)."""


def load(target: str) -> Supervisor:
    """Import ``module:attr`` (or ``file.py:attr``) and return the Supervisor it names."""
    where, _, attr = target.partition(":")
    attr = attr or "app"
    if not where:
        raise LoadError(f"no module in {target!r}: expected package.module:attribute")
    if where.endswith(".py") or os.sep in where:
        module = _import_file(Path(where))
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `python -m` does
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            if exc.name and (where == exc.name or where.startswith(exc.name + ".")):
                raise LoadError(f"cannot import {where!r}: {exc}") from exc
            raise
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LoadError(f"{where!r} has no attribute {attr!r}") from None
    if isinstance(obj, Supervisor):
        return obj
    if not callable(obj):
        raise LoadError(f"{target!r} is {obj!r}, not a Supervisor or a function returning one")
    built = obj()
    if not isinstance(built, Supervisor):
        raise LoadError(f"{target!r} returned {built!r}, not a Supervisor")
    return built


def _import_file(path: Path) -> object:
    if not path.is_file():
        raise LoadError(f"no such file: {str(path)!r}")
    name = path.stem if path.stem.isidentifier() else "lifecycle_app"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot import {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # as `python file.py` would: its siblings import
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lifecycle",
        description="Run a lifecycle app, or check its start and close plan.",
        epilog="TARGET: package.module:attribute or path/to/file.py:attribute (default "
               "attribute: app), a Supervisor or a function returning one.")
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,check}")

    def common(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("target", metavar="TARGET")
        cmd.add_argument("--shutdown-timeout", type=_seconds, metavar="SECONDS",
                         help="override the supervisor's shutdown budget")
        cmd.add_argument("--drain-delay", type=_seconds, metavar="SECONDS",
                         help="override the supervisor's drain delay")

    run = sub.add_parser("run", help="run the app until SIGINT/SIGTERM; exit with the report's code")
    common(run)
    run.add_argument("--log-format", choices=("text", "json"), default="text",
                     help="text (default) or JSON lines, one per log record")
    run.add_argument("--log-level", default="INFO", metavar="LEVEL",
                     help="root log level (default INFO)")
    run.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    run.add_argument("--trace", metavar="FILE",
                     help="write the startup/shutdown timeline as Chrome trace JSON (Perfetto)")
    run.add_argument("--report", metavar="FILE", help="write the report as JSON")
    check = sub.add_parser("check", help="validate the app and print its plan; start nothing")
    common(check)
    check.add_argument("--json", action="store_true", help="print the plan as JSON")
    check.add_argument("--graph", choices=sorted(FORMATS), metavar="{dot,mermaid}",
                       help="print the dependency graph (start levels, stop waves, deadlines) "
                            "as Graphviz DOT or Mermaid instead of the plan")
    check.add_argument("--strict", action="store_true",
                       help="exit 2 when the plan has warnings (a close that may overrun)")
    return p


def _build(args: argparse.Namespace) -> Supervisor | None:
    try:
        sup = load(args.target)
        sup.set_budget(shutdown_timeout=args.shutdown_timeout, drain_delay=args.drain_delay)
        return sup
    except ConfigError as exc:
        print(f"lifecycle: configuration error in {args.target}: {exc}", file=sys.stderr)
        graph = getattr(args, "graph", None)
        if graph and exc.cycle:
            print(cycle_graph(exc.cycle, graph), end="")
    except LoadError as exc:
        print(f"lifecycle: {exc}", file=sys.stderr)
    except Exception as exc:
        traceback.print_exc()
        print(f"lifecycle: building the app from {args.target!r} failed: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return None


def cmd_run(args: argparse.Namespace) -> int:
    try:
        configure(args.log_format, args.log_level)
    except ValueError as exc:
        print(f"lifecycle: bad --log-level {args.log_level!r}: {exc}", file=sys.stderr)
        return USAGE_ERROR
    sup = _build(args)
    if sup is None:
        return USAGE_ERROR
    files = [WriteAtStop(path, write) for path, write in ((args.trace, write_trace),
                                                          (args.report, _write_report)) if path]
    return int(sup.run(backend=args.backend, observers=files).exit_code)


class WriteAtStop:
    """An observer that writes the complete report to ``path`` with ``write`` when the run
    stops (``--trace``, ``--report``); a file that cannot be written is logged."""

    def __init__(self, path: str, write: Callable[[LifecycleReport, str], None]) -> None:
        self.path, self.write = path, write

    def attach(self, sup: Supervisor) -> Callable[[], None]:
        def on_event(event: Event) -> None:
            if isinstance(event, Stopped):
                try:
                    self.write(sup.report, self.path)
                except OSError as exc:
                    log.error("could not write %s: %s", self.path, exc)
        return sup.subscribe(on_event)


def _write_report(report: LifecycleReport, path: str) -> None:
    text = json.dumps(report.to_dict(), indent=2, default=str)
    Path(path).write_text(text + "\n", encoding="utf-8")


def cmd_check(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sup = _build(args)
    if sup is None:
        return USAGE_ERROR
    plan = plan_of(sup)
    if args.graph:
        print(render(plan, args.graph), end="")
    else:
        print(json.dumps(plan.to_dict(), indent=2) if args.json else plan.format())
    return USAGE_ERROR if args.strict and plan.warnings else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)  # a usage error exits 2 here
    return cmd_run(args) if args.command == "run" else cmd_check(args)
