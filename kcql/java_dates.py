"""Java date patterns (`yyyy-MM-dd-HH`, `'date='yyyy-MM-dd`) → Python formatting, validated."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from core.errors import LanguageError

_FIELDS = {
    "yyyy": "%Y",
    "yy": "%y",
    "uuuu": "%Y",
    "MM": "%m",
    "dd": "%d",
    "HH": "%H",
    "mm": "%M",
    "ss": "%S",
    "SSS": "%f3",
    "M": "%-m",
    "d": "%-d",
    "H": "%-H",
    "EEE": "%a",
    "MMM": "%b",
}
_LETTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class JavaPatternError(LanguageError):
    """A Java date pattern (PARTITIONBY, a transform's format) that cannot be used; the parser
    turns it into a KcqlError at the pattern's position."""

    def __init__(self, pattern: str, index: int, reason: str) -> None:
        self.pattern = pattern
        self.index = index
        self.reason = reason
        super().__init__(f"date pattern {pattern!r} at position {index + 1}: {reason}")


def pattern_parts(pattern: str) -> list[tuple[bool, str]]:
    """[(is_field, text)]: field runs like `yyyy` and literal text (quoted or punctuation)."""
    parts: list[tuple[bool, str]] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            j = pattern.find("'", i + 1)
            if j < 0:
                raise JavaPatternError(pattern, i, "unterminated quoted literal")
            parts.append((False, pattern[i + 1 : j] if j > i + 1 else "'"))
            i = j + 1
        elif ch in _LETTERS:
            j = i
            while j < len(pattern) and pattern[j] == ch:
                j += 1
            run = pattern[i:j]
            if run not in _FIELDS:
                raise JavaPatternError(
                    pattern, i, f"unsupported field {run!r}; supported: {', '.join(sorted(_FIELDS))}"
                )
            parts.append((True, run))
            i = j
        else:
            parts.append((False, ch))
            i += 1
    if not parts:
        raise JavaPatternError(pattern, 0, "empty pattern")
    return parts


def java_to_strftime(pattern: str) -> str:
    return "".join(
        _FIELDS[text] if field else text.replace("%", "%%") for field, text in pattern_parts(pattern)
    )


def java_date_formatter(pattern: str) -> Callable[[datetime], str]:
    parts = pattern_parts(pattern)

    def render(moment: datetime) -> str:
        out = []
        for field, text in parts:
            if not field:
                out.append(text)
            elif text == "SSS":
                out.append(f"{moment.microsecond // 1000:03d}")
            elif text in ("M", "d", "H"):
                out.append(str({"M": moment.month, "d": moment.day, "H": moment.hour}[text]))
            else:
                out.append(moment.strftime(_FIELDS[text]))
        return "".join(out)

    return render
