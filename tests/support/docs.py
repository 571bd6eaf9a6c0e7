"""Reading the project's Markdown documents: their sections, fenced code blocks, relative links,
heading anchors (as GitHub makes them), and the `kbackup` command lines of their shell blocks."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCUMENTS = (
    README,
    REPO / "ARCHITECTURE.md",
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "bench" / "README.md",
)

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_SEPARATORS = {"&&", "||", ";", "|"}


def code_blocks(text: str, language: str | None = None) -> list[str]:
    """The fenced blocks of `text` (only those whose info string is `language`, when given)."""
    return [body for lang, body in _FENCE.findall(text) if language is None or lang == language]


def prose(text: str) -> str:
    """`text` without its fenced blocks and inline code: where links are links."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def section(text: str, heading: str) -> str:
    """The `## heading` section of `text`, up to the next heading of level 2 or higher."""
    match = re.search(rf"^## {re.escape(heading)}[ \t]*\n(.*?)(?=^#{{1,2}} |\Z)", text, re.S | re.M)
    if match is None:
        raise LookupError(f"no section '## {heading}'")
    return match.group(1)


def relative_links(text: str) -> list[str]:
    """The targets of the Markdown links in `text`'s prose that are not absolute URLs."""
    return [
        target for target in _LINK.findall(prose(text)) if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)
    ]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower-cased, markup and punctuation dropped (letters, digits,
    `_` and `-` kept), spaces to `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of `text`, with GitHub's `-1`, `-2` … for repeated headings."""
    seen: dict[str, int] = {}
    found = set()
    for line in _FENCE.sub("", text).splitlines():
        match = re.match(r"^#{1,6} (.+?)[ \t#]*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def shell_commands(block: str) -> Iterator[list[str]]:
    """Each command of a shell block as its argv: lines joined while a quote is open, comments
    dropped, `&&`, `||`, `;` and `|` splitting a line into commands."""
    pending = ""
    for line in block.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on on the next line
            continue
        pending = ""
        command: list[str] = []
        for word in words:
            if word in _SEPARATORS:
                if command:
                    yield command
                command = []
            else:
                command.append(word)
        if command:
            yield command
    if pending:
        raise ValueError(f"unclosed quote in: {pending}")


def kbackup_commands(text: str) -> list[list[str]]:
    """The arguments (after `kbackup`) of every `kbackup` command in `text`'s bash blocks."""
    return [
        argv[1:]
        for block in code_blocks(text, "bash")
        for argv in shell_commands(block)
        if argv and argv[0] == "kbackup"
    ]
