"""Recursive-descent parser for KCQL statements: the grammar below; the properties are in
kcql/properties.py, and docs/user-guide.md ("KCQL", "KCQL properties we add to Stream Reactor's") shows both.

statements := statement (';' statement)* [';']
statement  := INSERT INTO target SELECT '*' FROM source clause*
clause     := PARTITIONBY field (',' field)* | STOREAS format | WITH_FLUSH_SIZE '=' int
            | WITH_FLUSH_INTERVAL '=' int | WITH_FLUSH_COUNT '=' int | LIMIT int
            | PROPERTIES '(' prop (',' prop)* [','] ')' | NOPARTITION
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from kcql.errors import KcqlSyntaxError, KcqlValueError, suggestion
from kcql.java_dates import JavaPatternError, pattern_parts
from kcql.properties import (
    PADDING_LENGTH_PREFIX,
    PROPERTIES,
    PropertyProblem,
    compression_allowed,
    valid_names,
)
from kcql.specs import BackupSpec, Format, PartitionField, RestoreSpec
from kcql.tokens import Kind, Token, tokenize

Kind_ = Literal["backup", "restore"]
CLAUSES = (
    "PARTITIONBY",
    "STOREAS",
    "WITH_FLUSH_SIZE",
    "WITH_FLUSH_INTERVAL",
    "WITH_FLUSH_COUNT",
    "LIMIT",
    "PROPERTIES",
    "NOPARTITION",
)
_LEGACY_FLUSH = {
    "WITH_FLUSH_SIZE": "flush.size",
    "WITH_FLUSH_INTERVAL": "flush.interval",
    "WITH_FLUSH_COUNT": "flush.count",
}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_FIELD_SOURCES = {"_key": "key", "_value": "value", "_header": "header", "_headers": "header"}


@dataclass
class _Statement:
    start: Token
    target: tuple[str, Token]
    source: tuple[str, Token]
    clauses: dict[str, Token] = field(default_factory=dict)
    partition_by: list[tuple[PartitionField, Token]] = field(default_factory=list)
    format: tuple[Format, Token] | None = None
    legacy_flush: dict[str, tuple[int, Token]] = field(default_factory=dict)
    limit: int | None = None
    properties: list[tuple[str, Any, Token, Token]] = field(default_factory=list)


class Parser:
    def __init__(self, text: str, kind: Kind_) -> None:
        self.text = text
        self.kind = kind
        self.tokens = tokenize(text)
        self.pos = 0

    # --- token helpers ---------------------------------------------------------------------
    def _peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def _advance(self) -> Token:
        token = self._peek()
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return token

    def _is_keyword(self, word: str, token: Token | None = None) -> bool:
        token = token or self._peek()
        return token.kind is Kind.WORD and token.value.upper() == word

    def _is_symbol(self, symbol: str) -> bool:
        token = self._peek()
        return token.kind is Kind.SYMBOL and token.value == symbol

    def error(self, token: Token, expected: str, hint: str = "") -> KcqlSyntaxError:
        return KcqlSyntaxError(self.text, token.offset, expected, token.describe(), hint)

    def value_error(
        self, token: Token, expected: str, found: str | None = None, hint: str = ""
    ) -> KcqlValueError:
        return KcqlValueError(self.text, token.offset, expected, found or token.describe(), hint)

    def _expect_keyword(self, word: str) -> Token:
        if not self._is_keyword(word):
            raise self.error(self._peek(), word)
        return self._advance()

    def _expect_symbol(self, symbol: str, expected: str | None = None) -> Token:
        if not self._is_symbol(symbol):
            raise self.error(self._peek(), expected or f"'{symbol}'")
        return self._advance()

    def _name(self, what: str, allow: str = "") -> tuple[str, Token]:
        """A name: a backtick name, or adjacent words/integers/dots (and `allow` symbols)."""
        first = self._peek()
        if first.kind is Kind.QUOTED_NAME:
            self._advance()
            return first.value, first
        if first.kind not in (Kind.WORD, Kind.INT) or first.value.upper() in ("SELECT", "FROM", *CLAUSES):
            raise self.error(first, what)
        parts = [self._advance().value]
        while True:
            nxt = self._peek()
            adjacent = nxt.offset == self.tokens[self.pos - 1].end
            if adjacent and (
                nxt.kind in (Kind.WORD, Kind.INT) or (nxt.kind is Kind.SYMBOL and nxt.value in "." + allow)
            ):
                parts.append(self._advance().value)
            else:
                return "".join(parts), first

    # --- grammar ---------------------------------------------------------------------------
    def parse(self) -> list[_Statement]:
        statements = []
        if self._peek().kind is Kind.END:
            raise self.error(self._peek(), "INSERT")
        while True:
            statements.append(self._statement())
            if self._is_symbol(";"):
                self._advance()
                if self._peek().kind is Kind.END:
                    return statements
            elif self._peek().kind is Kind.END:
                return statements
            else:
                raise self.error(self._peek(), _clause_expectation(self.kind, "';' or end of input"))

    def _location(self) -> tuple[str, Token]:
        """bucket[:prefix]"""
        bucket, token = self._name("a bucket name")
        if not _BUCKET.match(bucket):
            raise self.value_error(
                token, "a bucket name (3-63 lowercase letters, digits, dots and dashes)", repr(bucket)
            )
        if self._is_symbol(":"):
            self._advance()
            prefix, _ = self._name("a prefix after ':'", allow="/")
            return f"{bucket}:{prefix.strip('/')}", token
        return bucket, token

    def _topic(self, what: str) -> tuple[str, Token]:
        if self._is_symbol("*"):
            return "*", self._advance()
        return self._name(what)

    def _statement(self) -> _Statement:
        start = self._expect_keyword("INSERT")
        self._expect_keyword("INTO")
        target = self._location() if self.kind == "backup" else self._topic("a topic name or *")
        self._expect_keyword("SELECT")
        self._expect_symbol("*", "'*'")
        self._expect_keyword("FROM")
        source = self._topic("a topic name or *") if self.kind == "backup" else self._location()
        statement = _Statement(start, target, source)
        while self._peek().kind is Kind.WORD and self._peek().value.upper() in CLAUSES:
            keyword = self._advance()
            name = keyword.value.upper()
            if name in statement.clauses:
                raise self.value_error(
                    keyword, f"each clause at most once, but {name} is repeated", keyword.describe()
                )
            statement.clauses[name] = keyword
            self._clause(name, keyword, statement)
        nxt = self._peek()
        if nxt.kind is not Kind.END and not self._is_symbol(";"):
            raise self.error(nxt, _clause_expectation(self.kind, "end of statement", statement.clauses))
        return statement

    def _clause(self, name: str, keyword: Token, statement: _Statement) -> None:
        if name == "PARTITIONBY":
            if self.kind == "restore":
                raise self.value_error(
                    keyword, "a restore clause (STOREAS, LIMIT, PROPERTIES)", "PARTITIONBY"
                )
            statement.partition_by.append(self._partition_field())
            while self._is_symbol(","):
                self._advance()
                statement.partition_by.append(self._partition_field())
        elif name == "STOREAS":
            token = self._advance()
            if token.kind not in (Kind.WORD, Kind.QUOTED_NAME, Kind.STRING):
                raise self.error(token, "a format name (" + ", ".join(f.value for f in Format) + ")")
            try:
                statement.format = (Format(token.value.upper()), token)
            except ValueError:
                raise self.value_error(
                    token, "a format name", hint=suggestion(token.value.upper(), [f.value for f in Format])
                ) from None
        elif name in _LEGACY_FLUSH:
            if self.kind == "restore":
                raise self.value_error(keyword, "a restore clause (STOREAS, LIMIT, PROPERTIES)", name)
            self._expect_symbol("=")
            statement.legacy_flush[name] = (self._int(), keyword)
        elif name == "LIMIT":
            statement.limit = self._int()
        elif name == "PROPERTIES":
            self._expect_symbol("(")
            while True:
                statement.properties.append(self._property())
                if self._is_symbol(","):
                    self._advance()
                    if self._is_symbol(")"):
                        break
                    continue
                break
            self._expect_symbol(")", "',' or ')'")

    def _int(self) -> int:
        token = self._advance()
        if token.kind is not Kind.INT or int(token.value) < 1:
            raise self.error(token, "a positive integer")
        return int(token.value)

    def _partition_field(self) -> tuple[PartitionField, Token]:
        text, token = self._name(
            "a PARTITIONBY field (_key, _key.a, _value.a, _header.x, _topic, _partition, _date.<pattern>)",
            allow="/:",
        )
        head, _, rest = text.partition(".")
        path = tuple(p for p in rest.split(".") if p) if rest else ()
        if head.lower() == "_topic" and not rest:
            return PartitionField(source="topic"), token
        if head.lower() == "_partition" and not rest:
            return PartitionField(source="partition"), token
        if head.lower() == "_date":
            if not rest:
                raise self.value_error(
                    token, "a date pattern after _date., such as _date.yyyy-MM-dd-HH", repr(text)
                )
            try:
                pattern_parts(rest)
            except JavaPatternError as exc:
                raise self.value_error(token, "a Java date pattern", repr(rest), hint=str(exc)) from None
            return PartitionField(source="date", pattern=rest), token
        source = _FIELD_SOURCES.get(head.lower())
        if source is None:
            if head.startswith("_"):
                valid = ["_key", "_value", "_header", "_headers", "_topic", "_partition", "_date"]
                raise self.value_error(token, "a PARTITIONBY field", repr(text), hint=suggestion(head, valid))
            return PartitionField(source="value", path=tuple(text.split("."))), token  # a bare value path
        if source == "header" and len(path) != 1:
            raise self.value_error(token, "a header name after _header.", repr(text))
        return PartitionField(source=source, path=path), token  # type: ignore[arg-type]

    def _property(self) -> tuple[str, Any, Token, Token]:
        name_token = self._advance()
        if name_token.kind is not Kind.STRING:
            raise self.error(name_token, "a quoted property name such as 'store.envelope'")
        self._expect_symbol("=")
        value_token = self._advance()
        if value_token.kind is Kind.STRING:
            value: Any = value_token.value
        elif value_token.kind is Kind.INT:
            value = int(value_token.value)
        elif value_token.kind is Kind.WORD and value_token.value.lower() in ("true", "false"):
            value = value_token.value.lower() == "true"
        else:
            raise self.error(value_token, "a string, integer, true or false")
        return name_token.value, value, name_token, value_token


def _clause_expectation(kind: Kind_, tail: str, used: dict[str, Token] | None = None) -> str:
    clauses = (
        ["STOREAS", "PARTITIONBY", "PROPERTIES"] if kind == "backup" else ["STOREAS", "LIMIT", "PROPERTIES"]
    )
    clauses = [c for c in clauses if not used or c not in used]
    return ", ".join(clauses) + f" or {tail}" if clauses else tail


# --- from parsed statements to specs ---------------------------------------------------------


def _split_location(location: str) -> tuple[str, str]:
    bucket, _, prefix = location.partition(":")
    return bucket, prefix


def _apply_properties(parser: Parser, statement: _Statement, kind: Kind_) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    padding_lengths: dict[str, int] = {}
    for name, value, name_token, value_token in statement.properties:
        if name in raw:
            raise parser.value_error(name_token, "each property at most once", repr(name))
        raw[name] = value
        if (
            kind == "backup"
            and name.startswith(PADDING_LENGTH_PREFIX)
            and len(name) > len(PADDING_LENGTH_PREFIX)
        ):
            if isinstance(value, bool) or not str(value).isdigit():
                raise parser.value_error(value_token, f"an integer for {name!r}")
            padding_lengths[name[len(PADDING_LENGTH_PREFIX) :]] = int(value)
            continue
        prop = PROPERTIES.get(name)
        if prop is None or not (prop.backup if kind == "backup" else prop.restore):
            other = "restore" if kind == "backup" else "backup"
            what = (
                f"a {kind} property"
                if prop is None
                else f"a {kind} property ({name!r} is a {other} property)"
            )
            raise parser.value_error(name_token, what, repr(name), hint=suggestion(name, valid_names(kind)))
        try:
            converted = prop.convert(value)
        except PropertyProblem as problem:
            raise parser.value_error(value_token, f"{problem.expected} for {name!r}") from None
        if prop.field:
            fields[prop.field] = converted
    for legacy, (number, token) in statement.legacy_flush.items():
        prop_name = _LEGACY_FLUSH[legacy]
        if prop_name in raw:
            raise parser.value_error(token, f"either {legacy} or '{prop_name}', not both", legacy)
        fields[PROPERTIES[prop_name].field] = number
    if padding_lengths:
        fields["padding.lengths"] = tuple(sorted({"offset": 12, **padding_lengths}.items()))
    fields["properties"] = raw
    return fields


def _nest(fields: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for name, value in fields.items():
        if "." in name:
            outer, inner = name.split(".", 1)
            nested.setdefault(outer, {})[inner] = value
        else:
            nested[name] = value
    return nested


def _build(parser: Parser, statement: _Statement) -> BackupSpec | RestoreSpec:
    fields = _apply_properties(parser, statement, parser.kind)
    fmt = statement.format[0] if statement.format else None
    if "compression" in fields:
        allowed = compression_allowed(fmt or Format.JSON)
        if fields["compression"] not in allowed:
            token = next(t for n, _, _, t in statement.properties if n == "compression")
            raise parser.value_error(
                token, f"a {(fmt or Format.JSON).value} compression ({', '.join(allowed)})"
            )
    try:
        if parser.kind == "backup":
            bucket, prefix = _split_location(statement.target[0])
            return BackupSpec(
                bucket=bucket,
                prefix=prefix,
                topics=(statement.source[0],),
                partition_by=tuple(f for f, _ in statement.partition_by),
                format=fmt or Format.JSON,
                **_nest(fields),
            )
        bucket, prefix = _split_location(statement.source[0])
        return RestoreSpec(
            target_topic=statement.target[0],
            bucket=bucket,
            prefix=prefix,
            format=fmt,
            batch_limit=statement.limit,
            **_nest(fields),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        # A rule between properties names them: point at the first one the statement sets.
        for name, _, name_token, _ in statement.properties:
            if f"'{name}'" in message:
                raise parser.value_error(name_token, message, f"'{name}'") from None
        raise parser.value_error(
            statement.start,
            f"a valid statement ({first['msg']} at {'.'.join(map(str, first['loc']))})",
            "this statement",
        ) from None


def parse(text: str, kind: Kind_) -> list[BackupSpec | RestoreSpec]:
    parser = Parser(text, kind)
    return [_build(parser, statement) for statement in parser.parse()]


def parse_backup(text: str) -> list[BackupSpec]:
    """Backup statements: INSERT INTO bucket[:prefix] SELECT * FROM topic …"""
    return parse(text, "backup")  # type: ignore[return-value]


def parse_restore(text: str) -> list[RestoreSpec]:
    """Restore statements: INSERT INTO topic SELECT * FROM bucket[:prefix] …"""
    return parse(text, "restore")  # type: ignore[return-value]
