"""Checks of the docs' configuration blocks against the real thing: systemd units through
``systemd-analyze verify``, and stated signatures against the code's."""

from __future__ import annotations

import ast
import inspect
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.docpages import Block, SnippetError


def unit_values(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> values, as systemd reads a unit (comments only on their own lines)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        values.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return values


def verify_unit(block: Block) -> None:
    """Inline comments (systemd takes them as part of the value), then systemd-analyze."""
    for offset, raw in enumerate(block.text.splitlines()):
        if "=" in raw and not raw.lstrip().startswith(("#", ";")) and re.search(r"\s[#;]", raw):
            raise SnippetError(f"{block.page}:{block.line + offset}: systemd has no inline "
                               f"comments: the comment becomes part of the value: {raw.strip()}")
    if shutil.which("systemd-analyze") is None or not Path("/usr/lib/systemd/system").is_dir():
        print(f"{block.where}: systemd-analyze not installed: unit checked for comments only")
        return
    name = re.search(r"^#\s*/etc/systemd/system/(\S+\.service)", block.text, re.M)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # verify reads the standard units (sysinit.target, ...) from under --root, and wants
        # every Exec*= program to exist and be executable there.
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
        unit = root / "etc/systemd/system" / (name[1] if name else "snippet.service")
        unit.parent.mkdir(parents=True)
        unit.write_text(block.text)
        for key, values in unit_values(block.text).items():
            if key.split(".")[-1].startswith("Exec"):
                for value in values:
                    program = root / value.lstrip("-@:+!").split()[0].lstrip("/")
                    program.parent.mkdir(parents=True, exist_ok=True)
                    program.write_text("#!/bin/sh\n")
                    program.chmod(0o755)
        proc = subprocess.run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no",
                               f"--root={root}", f"/{unit.relative_to(root)}"],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0 or proc.stderr.strip():
            raise SnippetError(f"{block.where}: systemd-analyze verify: exit code "
                               f"{proc.returncode}\n{proc.stdout}{proc.stderr}")


def _resolve(target: str) -> object:
    import importlib

    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise SnippetError(f"cannot import {target!r}")


def _as_defs(text: str) -> str:
    """``Name(params)`` / ``Name.attr(params)`` at the start of a line -> ``def Name(params): ...``."""
    out, i = [], 0
    for match in re.finditer(r"^(\w+)(?:\.(\w+))?\(", text, re.M):
        if match.start() < i:
            continue
        depth, j = 0, match.end() - 1
        while True:
            depth += {"(": 1, ")": -1}.get(text[j], 0)
            if depth == 0:
                break
            j += 1
        name = match[2] or match[1]
        out.append(f"def {name}({text[match.end():j]}): ...\n")
        i = j + 1
    return "".join(out)


def _compare(where: str, doc: ast.FunctionDef, obj: object, namespace: dict[str, object]) -> None:
    actual = inspect.signature(obj)  # type: ignore[arg-type]
    doc_params = [(a.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD) for a in doc.args.args] + [
        (a.arg, inspect.Parameter.KEYWORD_ONLY) for a in doc.args.kwonlyargs]
    real = [(p.name, p.kind) for p in actual.parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"]
    doc_params = [p for p in doc_params if p[0] != "self"]
    if doc_params != real:
        raise SnippetError(f"{where}: {doc.name}() is documented with parameters "
                           f"{[n for n, _ in doc_params]} but has {[n for n, _ in real]} "
                           f"(or their kinds differ)")
    if (doc.args.kwarg is None) != all(p.kind != p.VAR_KEYWORD for p in actual.parameters.values()):
        raise SnippetError(f"{where}: {doc.name}(): **kwargs documented wrongly")
    defaults = dict(zip([a.arg for a in doc.args.args][::-1], doc.args.defaults[::-1], strict=False))
    defaults.update({a.arg: d for a, d in zip(doc.args.kwonlyargs, doc.args.kw_defaults, strict=True)
                     if d is not None})
    for name, param in actual.parameters.items():
        if name in defaults:
            shown = eval(compile(ast.Expression(defaults[name]), where, "eval"), namespace)
            if shown != param.default:
                raise SnippetError(f"{where}: {doc.name}({name}=...): documented default "
                                   f"{shown!r}, the code has {param.default!r}")
        elif param.default is not param.empty and name != "self":
            raise SnippetError(f"{where}: {doc.name}({name}=...): its default is not shown")


def check_signature(block: Block, target: str) -> None:
    """The block states ``target``'s signature (and class attribute defaults) exactly."""
    obj = _resolve(target)
    namespace = dict(vars(sys.modules[obj.__module__]))  # type: ignore[attr-defined]
    tree = ast.parse(block.text if block.text.lstrip().startswith("class ")
                     else _as_defs(block.text))
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value:
                    shown = eval(compile(ast.Expression(item.value), block.where, "eval"), namespace)
                    real = getattr(obj, item.target.id)
                    if shown != real:
                        raise SnippetError(f"{block.where}: {node.name}.{item.target.id}: "
                                           f"documented {shown!r}, the code has {real!r}")
                elif isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    _compare(block.where, item, obj, namespace)
        elif isinstance(node, ast.FunctionDef):
            member = obj if node.name == getattr(obj, "__name__", None) else getattr(obj, node.name)
            _compare(block.where, node, member, namespace)
