"""The KCQL tokenizer: every token keeps its line, column and offset."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from kcql.errors import KcqlSyntaxError


class Kind(Enum):
    WORD = "word"
    INT = "integer"
    STRING = "string"
    QUOTED_NAME = "backtick name"
    SYMBOL = "symbol"
    END = "end of input"


@dataclass(frozen=True)
class Token:
    kind: Kind
    text: str  # as written
    value: str  # unquoted
    offset: int
    line: int
    column: int

    @property
    def end(self) -> int:
        return self.offset + len(self.text)

    def describe(self) -> str:
        return "end of input" if self.kind is Kind.END else repr(self.text)


OPEN_QUOTES = {"'": "'’", "‘": "’'", "’": "’'", "“": '”"', '"': '"'}
SYMBOLS = set(";,()=*:./")
_WORD_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-$")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, line, line_start = 0, 1, 0

    def make(kind: Kind, start: int, end: int, value: str) -> Token:
        return Token(kind, text[start:end], value, start, line, start - line_start + 1)

    while i < len(text):
        ch = text[i]
        if ch == "\n":
            i += 1
            line, line_start = line + 1, i
        elif ch.isspace():
            i += 1
        elif ch == "-" and text.startswith("--", i):
            while i < len(text) and text[i] != "\n":
                i += 1
        elif ch in OPEN_QUOTES:
            closers = OPEN_QUOTES[ch]
            j = i + 1
            while j < len(text) and text[j] not in closers:
                if text[j] == "\n":
                    break
                j += 1
            if j >= len(text) or text[j] == "\n":
                raise KcqlSyntaxError(
                    text, i, "a closing quote", f"an unterminated string starting {text[i:j][:20]!r}"
                )
            tokens.append(make(Kind.STRING, i, j + 1, text[i + 1 : j]))
            i = j + 1
        elif ch == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise KcqlSyntaxError(text, i, "a closing backtick", "an unterminated backtick name")
            tokens.append(make(Kind.QUOTED_NAME, i, j + 1, text[i + 1 : j]))
            i = j + 1
        elif ch in _WORD_CHARS:
            j = i
            while j < len(text) and text[j] in _WORD_CHARS:
                j += 1
            word = text[i:j]
            kind = Kind.INT if word.isdigit() or (word.startswith("-") and word[1:].isdigit()) else Kind.WORD
            tokens.append(make(kind, i, j, word))
            i = j
        elif ch in SYMBOLS:
            tokens.append(make(Kind.SYMBOL, i, i + 1, ch))
            i += 1
        else:
            raise KcqlSyntaxError(text, i, "a keyword, name, string or symbol", f"{ch!r}")
    tokens.append(Token(Kind.END, "", "", len(text), line, len(text) - line_start + 1))
    return tokens
