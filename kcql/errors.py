"""The KCQL error family: every error knows its line, column, what was expected and found,
and renders the statement with a caret under the column. Plain text, no colours. KcqlError is
a core.errors.LanguageError (bad input: the command line exits 2), and so a ValueError."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from core.errors import LanguageError


class KcqlError(LanguageError):
    """A KCQL text could not be parsed or validated."""

    def __init__(self, text: str, offset: int, expected: str, found: str, hint: str = "") -> None:
        self.text = text
        self.offset = max(0, min(offset, len(text)))
        before = text[: self.offset]
        self.line = before.count("\n") + 1
        self.column = self.offset - (before.rfind("\n") + 1) + 1
        self.expected = expected
        self.found = found
        self.hint = hint
        super().__init__(self.render())

    @property
    def statement_line(self) -> str:
        return self.text.splitlines()[self.line - 1] if self.text.strip() else ""

    def render(self) -> str:
        lines = [
            f"KCQL error at line {self.line}, column {self.column}: expected {self.expected}, found {self.found}"
        ]
        if self.text.strip():
            lines.append(self.statement_line)
            lines.append(" " * (self.column - 1) + "^")
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


class KcqlSyntaxError(KcqlError):
    """The text does not follow the grammar."""


class KcqlValueError(KcqlError):
    """The grammar is fine but a name or value is not valid (unknown property, bad number…)."""


def suggestion(word: str, valid: Iterable[str]) -> str:
    valid = sorted(valid)
    close = difflib.get_close_matches(word, valid, n=1, cutoff=0.6)
    listed = ", ".join(valid)
    return (f"did you mean {close[0]!r}? " if close else "") + f"valid: {listed}"
