"""PROPERTIES: which names a backup or a restore accepts, their types, and the spec fields they set."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.errors import LanguageError
from kcql.specs import Format, RestoreBound

Value = str | int | bool


class PropertyProblem(LanguageError):
    """A property's value is not valid; `expected` says what would be."""

    def __init__(self, expected: str) -> None:
        self.expected = expected
        super().__init__(expected)


def _bool(value: Value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise PropertyProblem("true or false")


def _int(minimum: int = 0) -> Callable[[Value], int]:
    def convert(value: Value) -> int:
        if isinstance(value, bool):
            raise PropertyProblem(f"an integer ≥ {minimum}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise PropertyProblem(f"an integer ≥ {minimum}") from None
        if number < minimum:
            raise PropertyProblem(f"an integer ≥ {minimum}")
        return number

    return convert


def _choice(*choices: str, fold: bool = True) -> Callable[[Value], str]:
    def convert(value: Value) -> str:
        text = str(value)
        for choice in choices:
            if text == choice or (fold and text.lower() == choice.lower()):
                return choice
        raise PropertyProblem(" or ".join(repr(c) for c in choices))

    return convert


def _text(value: Value) -> str:
    if not isinstance(value, str) or not value:
        raise PropertyProblem("a non-empty string")
    return value


TOPIC_PREFIX_EXPECTED = "a topic-name prefix: letters, digits, '.', '_' and '-'"
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]+")


def topic_prefix(value: Value) -> str:
    """What every target topic's name starts with (`restore.topic.prefix`, the restore drill's
    `drill-<id>-`): characters a topic name may hold."""
    if not isinstance(value, str) or not _TOPIC_CHARS.fullmatch(value):
        raise PropertyProblem(TOPIC_PREFIX_EXPECTED)
    return value


def _char(value: Value) -> str:
    if not isinstance(value, str) or len(value) != 1:
        raise PropertyProblem("a single character")
    return value


# The selection grammar (restore.from / restore.to / restore.partitions / restore.filter): one
# implementation for the statement's properties and for the overrides (kcql/selection.py).
BOUND_EXPECTED = "an ISO-8601 time such as '2026-01-01T00:00:00Z', epoch milliseconds or 'offset:N'"
PARTITIONS_EXPECTED = "a comma-separated list of partition numbers such as '0,2,5'"
FILTER_EXPECTED = "name=value pairs such as 'region=EMEA,year=2023'"


def restore_bound(value: Value) -> RestoreBound:
    """`offset:N` → an offset; whole (epoch) milliseconds → a time; else an ISO-8601 time, UTC when
    it names no zone."""
    text = str(value).strip()
    if text.lower().startswith("offset:"):
        return RestoreBound(offset=_int(0)(text.split(":", 1)[1]))
    if re.fullmatch(r"-?\d+", text):
        return RestoreBound(timestamp_ms=int(text))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PropertyProblem(BOUND_EXPECTED) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return RestoreBound(timestamp_ms=int(moment.timestamp() * 1000))


def partition_list(value: Value) -> tuple[int, ...]:
    try:
        numbers = tuple(int(part) for part in str(value).split(",") if part.strip())
    except ValueError:
        raise PropertyProblem(PARTITIONS_EXPECTED) from None
    if not numbers or min(numbers) < 0:
        raise PropertyProblem(PARTITIONS_EXPECTED)
    return numbers


def restore_filter(value: Value) -> tuple[tuple[str, str], ...]:
    """`name=value` pairs separated by commas (empty parts, such as a trailing comma, skipped)."""
    pairs = []
    for part in str(value).split(","):
        if not part.strip():
            continue
        name, sep, wanted = part.partition("=")
        if not sep or not name.strip():
            raise PropertyProblem(FILTER_EXPECTED)
        pairs.append((name.strip(), wanted.strip()))
    if not pairs:
        raise PropertyProblem(FILTER_EXPECTED)
    return tuple(pairs)


RESTORE_ACLS_EXPECTED = "false, true (the literal bindings) or 'all' (also prefixed and wildcard ones)"


def restore_acls(value: Value) -> str:
    """`restore.acls`: false → off, true → the literal bindings (renamed), `all` → also the
    prefixed and wildcard ones as the backup recorded them (widening access, asked explicitly)."""
    text = str(value).lower() if not isinstance(value, bool) else ("true" if value else "false")
    choices = {"false": "off", "off": "off", "true": "literal", "literal": "literal", "all": "all"}
    if text not in choices:
        raise PropertyProblem(RESTORE_ACLS_EXPECTED)
    return choices[text]


CONVERTER = _choice("bytes", "string", "json", "avro")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_EXPECTED = "a duration: a positive number and a unit, s m h d or w (7d, 12h)"


def duration_seconds(value: Value) -> int:
    """`7d`, `12h`, `90m`, `45s`, `2w` as seconds."""
    text = str(value).strip().lower()
    number, unit = text[:-1], text[-1:]
    if unit not in DURATION_UNITS or not number.isdigit() or int(number) <= 0:
        raise PropertyProblem(DURATION_EXPECTED)
    return int(number) * DURATION_UNITS[unit]


@dataclass(frozen=True)
class Property:
    name: str
    field: str  # the spec field it sets ("" = handled specially)
    convert: Callable[[Value], Any]
    backup: bool = True
    restore: bool = False


_PROPERTIES = [
    Property("store.envelope", "envelope.enabled", _bool, restore=True),
    Property("store.envelope.key", "envelope.key", _bool, restore=True),
    Property("store.envelope.value", "envelope.value", _bool, restore=True),
    Property("store.envelope.headers", "envelope.headers", _bool, restore=True),
    Property("store.envelope.metadata", "envelope.metadata", _bool, restore=True),
    Property("partition.include.keys", "partition_include_keys", _bool),
    Property("partition.missing", "partition_missing", _choice("error", "null")),
    Property("flush.size", "flush_size", _int(1)),
    Property("flush.count", "flush_count", _int(1)),
    Property("flush.interval", "flush_interval", _int(1)),
    Property("padding.type", "padding.type", _choice("LeftPad", "RightPad", "NoOp")),
    Property("padding.char", "padding.char", _char),
    Property("key.suffix", "key_suffix", _text),
    Property("key.converter", "key_converter", CONVERTER, restore=True),
    Property("value.converter", "value_converter", CONVERTER, restore=True),
    Property("compression", "compression", lambda v: str(v).lower()),
    Property("compression.level", "compression_level", _int(-10)),
    Property("isolation.level", "isolation_level", _choice("read_committed", "read_uncommitted")),
    Property("source.topic", "source_topic", _text, backup=False, restore=True),
    Property("restore.from", "restore_from", restore_bound, backup=False, restore=True),
    Property("restore.to", "restore_to", restore_bound, backup=False, restore=True),
    Property("restore.partitions", "partitions", partition_list, backup=False, restore=True),
    Property("restore.filter", "filter", restore_filter, backup=False, restore=True),
    Property(
        "restore.partitioner", "partitioner", _choice("preserve", "murmur2"), backup=False, restore=True
    ),
    Property("restore.group.prefix", "", _text, backup=False, restore=True),
    Property("restore.topic.prefix", "", topic_prefix, backup=False, restore=True),
    Property("restore.preflight", "preflight", _choice("quick", "full", "none"), backup=False, restore=True),
    Property("schema.registry.url", "schema_registry_url", _text, restore=True),
    Property("backup.full.every", "full_every_s", duration_seconds),
    Property("sse", "protection.sse", _choice("AES256", "aws:kms")),
    Property("sse.kms.key.id", "protection.kms_key_id", _text),
    Property("object.lock.mode", "protection.lock_mode", _choice("GOVERNANCE", "COMPLIANCE")),
    Property("object.lock.retention", "protection.lock_retention_s", duration_seconds),
    Property("restore.point", "point", _text, backup=False, restore=True),
    Property("restore.schema.ids", "schema_ids", _choice("rewrite", "keep"), backup=False, restore=True),
    Property(
        "restore.target.nonempty",
        "target_nonempty",
        _choice("refuse", "append"),
        backup=False,
        restore=True,
    ),
    Property(
        "restore.timestamp.zero",
        "timestamp_zero",
        _choice("refuse", "substitute"),
        backup=False,
        restore=True,
    ),
    Property("restore.acls", "acls", restore_acls, backup=False, restore=True),
    Property("restore.users", "users", _bool, backup=False, restore=True),
]
PROPERTIES = {p.name: p for p in _PROPERTIES}
PADDING_LENGTH_PREFIX = "padding.length."


def valid_names(kind: str) -> list[str]:
    names = [p.name for p in _PROPERTIES if (p.backup if kind == "backup" else p.restore)]
    return names + ([PADDING_LENGTH_PREFIX + "<field>"] if kind == "backup" else [])


def compression_allowed(fmt: Format) -> tuple[str, ...]:
    return fmt.compressions
