"""Runs the fenced blocks of a Markdown page the way a reader would, in order.

The docs' snippets are tests: ``tests/test_docs.py`` runs this module on README.md and every
``docs/*.md`` (new pages included automatically), each page in a fresh working directory, in
a subprocess of its own (snippets install signal handlers, configure logging, run loops).

What each block's language means:

- ``python`` (``py``): executed; the blocks of one page share one namespace, like a
  session. ``shell`` (``sh``, ``bash``, ``console``): run by ``bash -e`` in the page's
  working directory, with the test environment's ``python`` first on ``PATH``; exit code 0
  expected. The repository's ``examples/`` is linked into the working directory, as
  the pages' commands are run from a clone.
- ``text``: inert, unless marked as the expected output of the block before it.
- ``ini`` with a ``[Service]`` section: a systemd unit, checked by ``systemd-analyze verify``
  (when systemd is installed) and for inline comments (systemd has none).
- ``yaml``, ``toml``, ``json``: parsed. Other named languages are inert.
- A block with no language fails: say ``text`` for output and diagrams.

Directives are HTML comments (invisible on a rendered page) right before a block; several
may precede one block::

    <!-- snippet: fragment <why it cannot run as written> -->   not run (python: compiled)
    <!-- snippet: prelude
    import anyio                                                  hidden set-up, run first
    -->
    <!-- snippet: after
    assert report.ok                                              hidden check, run after
    -->
    <!-- snippet: file myapp.py -->      written to the working directory instead of run
    <!-- snippet: pytest [test_x.py] -->  a test module (so named), run by pytest: must pass
    <!-- snippet: output -->             (on a text block) the previous block's stdout
    <!-- snippet: output stderr -->      ... its stderr
    <!-- snippet: exit 2 -->             (shell) the exit code expected instead of 0
    <!-- snippet: interrupt all services started -->  (shell) Ctrl-C once the program
        printed that text (stdout or stderr); it must then exit 0
    <!-- snippet: signature lifecycle.Supervisor -->   the block states that object's
        signature (``Name(a, *, b=1)`` lines, or a class with attributes and __init__):
        parameter names, kinds and defaults, and class attribute defaults, must match it

In an expected output a line ``...`` stands for any lines, and ``...`` inside a line for
any text. ``python -m tests.docsnippets PAGE.md`` runs one page (the working directory is
the current one); it prints what failed, naming the page and line, and exits 1.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.docchecks import check_signature, unit_values, verify_unit
from tests.docpages import Block, SnippetError, parse

__all__ = ["Block", "Session", "SnippetError", "check_signature", "expected_output_matches",
           "parse", "unit_values", "verify_unit"]

PYTHON = frozenset({"python", "py", "python3"})
SHELL = frozenset({"shell", "sh", "bash", "console"})
REPOSITORY = Path(__file__).resolve().parent.parent
BLOCK_TIMEOUT = 120.0  # seconds a shell block or pytest run may take on a loaded machine


def expected_output_matches(expected: str, actual: str) -> bool:
    """``expected`` with ``...`` wildcards (a whole line: any lines; in a line: any text)."""
    parts = []
    for line in expected.strip("\n").splitlines():
        line = line.rstrip()
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.split("...")) + r"[ \t]*\n")
    pattern = "".join(parts)
    text = "\n".join(line.rstrip() for line in actual.strip("\n").splitlines()) + "\n"
    return re.fullmatch(pattern, text, re.S) is not None


@dataclass
class Outcome:
    stdout: str = ""
    stderr: str = ""


class Session:
    """One page: its blocks in order, in one namespace and one working directory."""

    def __init__(self, page: Path) -> None:
        self.page = page
        self.module = types.ModuleType("__snippet__")  # dataclasses look their module up
        sys.modules["__snippet__"] = self.module
        self.last: Outcome | None = None
        self.env = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)
        self.env["PATH"] = bin_dir + os.pathsep + self.env.get("PATH", "")
        examples = Path("examples")  # readers run the pages' commands from a clone
        if not examples.exists():
            examples.symlink_to(REPOSITORY / "examples", target_is_directory=True)

    def run(self) -> int:
        """Run every block; the number of blocks run (not inert, not fragments)."""
        ran = 0
        for block in parse(self.page):
            ran += self.run_block(block)
        return ran

    def run_block(self, block: Block) -> int:
        d = block.directives
        if "output" in d:
            self.compare_output(block, d["output"] or "stdout")
            return 1
        if "signature" in d:
            check_signature(block, d["signature"])
            return 1
        if "fragment" in d:
            if not d["fragment"]:
                raise SnippetError(f"{block.where}: a fragment must say why it cannot run")
            if block.lang in PYTHON:
                compile(block.text, block.where, "exec")
            return 0
        if "file" in d:
            Path(d["file"]).write_text(block.text)
            if block.lang in PYTHON:
                compile(block.text, block.where, "exec")
            return 0
        if block.lang in PYTHON:
            if "pytest" not in d and re.search(r"^(async )?def test_", block.text, re.M):
                raise SnippetError(f"{block.where}: defines tests: mark it `pytest` so they run")
            if "pytest" in d:
                self.run_pytest(block)
            else:
                self.run_python(block)
            return 1
        if block.lang in SHELL:
            self.run_shell(block)
            return 1
        return self.check_config(block)

    # ----- python -------------------------------------------------------------------------
    def _exec(self, block: Block) -> None:
        """Prelude, block and check as one piece of code, the block at its line on the page.

        Top-level ``await`` is allowed (as in an asyncio REPL): the whole piece then runs in
        one event loop, so what the prelude opened is still usable by the block.
        """
        head = block.directives.get("prelude", "") + "\n"
        source = (head + "\n" * max(block.line - 1 - head.count("\n"), 0) + block.text
                  + "\n" + block.directives.get("after", "") + "\n")
        code = compile(source, str(block.page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        if code.co_flags & inspect.CO_COROUTINE:
            asyncio.run(eval(code, self.module.__dict__))
        else:
            exec(code, self.module.__dict__)

    def run_python(self, block: Block) -> None:
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                self._exec(block)
        except BaseException as exc:  # SystemExit too: a snippet must not end the session
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            raise SnippetError(f"{block.where}: the python block failed:\n{tb}"
                               f"--- its stdout:\n{out.getvalue()}--- its stderr:\n"
                               f"{err.getvalue()}") from None
        self.last = Outcome(out.getvalue(), err.getvalue())

    def run_pytest(self, block: Block) -> None:
        test = Path(block.directives["pytest"] or f"test_snippet_{block.line}.py")
        test.write_text(block.directives.get("prelude", "") + "\n" + block.text)
        try:
            self.run_shell(block, [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                   "-W", "error::pytest.PytestConfigWarning", str(test)])
        finally:
            if block.directives.get("exit"):  # a failing example leaves the page's suite
                test.unlink()

    # ----- shell ----------------------------------------------------------------------------
    def run_shell(self, block: Block, argv: list[str] | None = None) -> None:
        argv = argv or ["bash", "-e", "-o", "pipefail", "-c", block.text]
        expect = int(block.directives.get("exit") or 0)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env, start_new_session=True)
        out: list[str] = []
        err: list[str] = []
        marker = block.directives.get("interrupt")
        seen = threading.Event()

        def read(stream: IO[str], into: list[str]) -> None:
            for line in stream:
                into.append(line)
                if marker and marker in line:
                    seen.set()

        readers = [threading.Thread(target=read, args=(proc.stdout, out), daemon=True),
                   threading.Thread(target=read, args=(proc.stderr, err), daemon=True)]
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + BLOCK_TIMEOUT
        if marker and seen.wait(BLOCK_TIMEOUT) and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C: the whole process group
        killed = False
        try:
            proc.wait(max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed = True
        for reader in readers:
            reader.join(10)
        stdout, stderr = "".join(out), "".join(err)
        if killed:
            raise SnippetError(f"{block.where}: still running after {BLOCK_TIMEOUT:g} s (killed)"
                               f"\n--- stdout:\n{stdout}--- stderr:\n{stderr}")
        if marker and not seen.is_set():
            raise SnippetError(f"{block.where}: never printed {marker!r}\n--- stdout:\n{stdout}"
                               f"--- stderr:\n{stderr}")
        if proc.returncode != expect:
            raise SnippetError(f"{block.where}: exit code {proc.returncode}, expected {expect}\n"
                               f"--- stdout:\n{stdout}--- stderr:\n{stderr}")
        self.last = Outcome(stdout, stderr)

    def compare_output(self, block: Block, stream: str) -> None:
        if self.last is None:
            raise SnippetError(f"{block.where}: an expected output, but no block ran before it")
        actual = self.last.stderr if stream == "stderr" else self.last.stdout
        if not expected_output_matches(block.text, actual):
            raise SnippetError(f"{block.where}: the output differs from the page.\n--- the page "
                               f"says:\n{block.text}--- the program printed ({stream}):\n{actual}")

    # ----- configuration files ---------------------------------------------------------------
    def check_config(self, block: Block) -> int:
        try:
            if block.is_unit:
                verify_unit(block)
            elif block.lang in ("yaml", "yml"):
                import yaml

                list(yaml.safe_load_all(block.text))
            elif block.lang == "toml":
                import tomllib

                tomllib.loads(block.text)
            elif block.lang == "json":
                import json

                json.loads(block.text)
            else:
                return 0  # text, diagrams, other languages: inert
        except SnippetError:
            raise
        except Exception as exc:
            raise SnippetError(f"{block.where}: does not parse as {block.lang}: {exc}") from None
        return 1


def main(argv: list[str]) -> int:
    failures = 0
    for page in argv:
        began = time.monotonic()
        try:
            ran = Session(Path(page).resolve()).run()
        except SnippetError as exc:
            print(f"FAILED {exc}", flush=True)
            failures += 1
        else:
            print(f"ok {page}: {ran} blocks checked in {time.monotonic() - began:.1f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
