"""A Markdown page as the docs tests see it: its fenced blocks and their directives.

The conventions are described in ``tests/docsnippets.py``, which runs the blocks.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

DIRECTIVES = frozenset({"fragment", "prelude", "after", "file", "pytest", "output", "exit",
                        "interrupt", "signature"})

_FENCE = re.compile(r"^(?P<indent> {0,8})```(?P<lang>[\w+-]*)\s*$")  # also inside list items
_DIRECTIVE = re.compile(r"^ {0,8}<!--\s*snippet:\s*(?P<name>[\w-]+)[ \t]*(?P<rest>.*?)\s*(?P<end>-->)?\s*$")


class SnippetError(Exception):
    """A block failed, or the page is malformed; the message names the page and line."""


@dataclass
class Block:
    page: Path
    line: int  # of the first line inside the fence
    lang: str
    text: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def is_unit(self) -> bool:
        return self.lang == "ini" and re.search(r"^\[Service\]\s*$", self.text, re.M) is not None


def parse(page: Path) -> list[Block]:
    """The page's fenced blocks with their directives; malformed pages raise SnippetError."""
    lines = page.read_text().splitlines()
    blocks: list[Block] = []
    pending: dict[str, str] = {}
    pending_at = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        directive = _DIRECTIVE.match(line)
        fence = _FENCE.match(line)
        if directive:
            name, rest = directive["name"], directive["rest"]
            if name not in DIRECTIVES:
                raise SnippetError(f"{page}:{i + 1}: unknown snippet directive {name!r} "
                                   f"(known: {', '.join(sorted(DIRECTIVES))})")
            if directive["end"] is None:  # a multi-line body, up to a line "-->"
                body = [rest] if rest else []
                i += 1
                while i < len(lines) and lines[i].strip() != "-->":
                    body.append(lines[i])
                    i += 1
                if i == len(lines):
                    raise SnippetError(f"{page}:{pending_at}: snippet directive never closed")
                rest = textwrap.dedent("\n".join(body))
            pending[name] = rest
            pending_at = pending_at or i + 1
        elif fence:
            start = i + 1
            indent = fence["indent"]
            i += 1
            while i < len(lines) and not lines[i].startswith(indent + "```"):
                i += 1
            if i == len(lines):
                raise SnippetError(f"{page}:{start}: code block never closed")
            if not fence["lang"]:
                raise SnippetError(f"{page}:{start}: a code block without a language: name it "
                                   "(python, shell, text for output or diagrams, ...)")
            text = "\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip()
                             for line in lines[start:i])
            blocks.append(Block(page, start + 1, fence["lang"].lower(), text + "\n", pending))
            pending, pending_at = {}, 0
        elif line.strip() and pending:
            raise SnippetError(f"{page}:{pending_at}: snippet directive not followed by a block")
        i += 1
    if pending:
        raise SnippetError(f"{page}:{pending_at}: snippet directive not followed by a block")
    return blocks
