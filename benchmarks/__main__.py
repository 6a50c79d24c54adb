"""``python -m benchmarks [--smoke] [--only NAME ...] [--output PATH]``: run, print, record.

A full run (no ``--smoke``) over every benchmark writes docs/performance.md; with
``--only`` the document is written only when ``--output`` names where. Goals that are
missed get a cProfile of lifecycle's measured region in the document (``--no-profile``
skips that). The exit code is 1 when a benchmark could not run, else 0: a missed goal is
a finding, not a failure.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

from benchmarks import MODULES, Size
from benchmarks._harness import ROOT, BenchmarkError, profile
from benchmarks._report import Section, console, document, machine
from benchmarks._servers import Pool

DEFAULT_OUTPUT = ROOT / "docs" / "performance.md"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one repeat: checks the harness, measures nothing")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=MODULES,
                        help=f"run only these benchmarks ({', '.join(MODULES)})")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"where a full run writes its report (default {DEFAULT_OUTPUT})")
    parser.add_argument("--no-profile", action="store_true",
                        help="do not profile lifecycle where it misses a goal")
    return parser.parse_args(argv)


def run_one(module: ModuleType, size: Size, pool: Pool, *, explain: bool) -> Section:
    section = Section(module)
    began = time.perf_counter()
    try:
        if "pool" in inspect.signature(module.run).parameters:
            section.results = module.run(size, pool=pool)
        else:
            section.results = module.run(size)
    except Exception as exc:
        section.error = str(exc) if isinstance(exc, BenchmarkError) else traceback.format_exc()
    missed = [r for r in section.results if r.met is False]
    target = getattr(module, "profile_target", None)
    if explain and missed and target is not None:
        fn, kwargs = target(size)
        try:
            section.profiles["lifecycle"] = profile(fn, **kwargs)
        except BenchmarkError as exc:
            section.profiles["lifecycle"] = f"(profiling failed: {exc})"
    section.seconds = time.perf_counter() - began
    return section


#: Sections of docs/performance.md below this line are measured by other commands (each
#: names its own) and survive a regeneration.
KEPT = "<!-- measured separately: kept when this file is regenerated -->"


def kept_sections(output: Path) -> str:
    try:
        text = output.read_text()
    except OSError:
        return ""
    return "\n" + text[text.index(KEPT):] if KEPT in text else ""


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    size: Size = "smoke" if args.smoke else "full"
    names = args.only or list(MODULES)
    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    began = datetime.datetime.now(datetime.timezone.utc)
    info = machine()
    print(f"{command}: {size} run of {', '.join(names)}", flush=True)
    clock = time.perf_counter()
    pool = Pool()
    sections = []
    try:
        for name in names:
            module = importlib.import_module(f"benchmarks.{name}")
            section = run_one(module, size, pool, explain=size == "full" and not args.no_profile)
            sections.append(section)
            print(console(section), flush=True)
    finally:
        pool.close()
    seconds = time.perf_counter() - clock
    print(f"total {seconds:.0f}s")
    output = args.output or (None if args.only else DEFAULT_OUTPUT)
    if size == "full" and output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(document(sections, command=command, began=began, seconds=seconds,
                                   info=info) + kept_sections(output))
        print(f"wrote {output}")
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
