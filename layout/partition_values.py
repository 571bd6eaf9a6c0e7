"""PARTITIONBY: the value of each partition field for one record.

Field values come from the key/value decoded as JSON when a path is asked for (a JSON object,
whatever the converter stores), from headers as UTF-8 text, from the record's topic and
partition, or from its timestamp formatted with the field's date pattern.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from core.errors import FormatError
from formats.envelope import Header, Record

FieldSource = Literal["key", "value", "header", "topic", "partition", "date"]
_MISSING = object()


class PartitionValueError(FormatError):
    """A record lacks a PARTITIONBY field (or it cannot be read); names the record."""

    def __init__(self, field_text: str, topic: str, partition: int, offset: int, reason: str) -> None:
        self.field_text = field_text
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason
        super().__init__(
            f"PARTITIONBY {field_text}: {reason} in record {topic}/{partition}@{offset}; "
            "set 'partition.missing'='null' to write such records under 'null'"
        )


@dataclass(frozen=True)
class FieldRule:
    """One PARTITIONBY field in the form this module evaluates."""

    source: FieldSource
    path: tuple[str, ...]
    text: str
    date_format: Callable[[datetime], str] | None = None


def scalar_text(value: Any) -> str | None:
    """The text of a field value as it appears in an object key."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


class PartitionValues:
    """Computes the PARTITIONBY values of records; decodes each key/value at most once."""

    def __init__(self, rules: Sequence[FieldRule], missing_as_null: bool) -> None:
        self.rules = tuple(rules)
        self.missing_as_null = missing_as_null

    def of(self, record: Record, extra_headers: Sequence[Header] = ()) -> tuple[str | None, ...]:
        decoded: dict[str, Any] = {}
        return tuple(self._value(rule, record, extra_headers, decoded) for rule in self.rules)

    def _value(
        self, rule: FieldRule, record: Record, extra_headers: Sequence[Header], decoded: dict[str, Any]
    ) -> str | None:
        if rule.source == "topic":
            return record.topic
        if rule.source == "partition":
            return str(record.partition)
        if rule.source == "date":
            if record.timestamp is None:
                return self._missing(rule, record, "the record has no timestamp")
            assert rule.date_format is not None
            return rule.date_format(datetime.fromtimestamp(record.timestamp / 1000, UTC))
        if rule.source == "header":
            name = rule.path[0]
            found: Any = _MISSING
            for header_name, header_value in (*record.headers, *extra_headers):
                if header_name == name:
                    found = header_value  # the last header of that name wins, as in Kafka Connect
            if found is _MISSING:
                return self._missing(rule, record, f"no header {name!r}")
            return scalar_text(found)
        raw = record.key if rule.source == "key" else record.value
        if not rule.path:
            return scalar_text(raw)
        if rule.source not in decoded:
            decoded[rule.source] = _as_document(raw)
        document = decoded[rule.source]
        for step in rule.path:
            if not isinstance(document, dict):
                return self._missing(rule, record, f"the {rule.source} is not a JSON object")
            if step not in document:
                return self._missing(rule, record, f"the {rule.source} has no field {'.'.join(rule.path)!r}")
            document = document[step]
        return scalar_text(document)

    def _missing(self, rule: FieldRule, record: Record, reason: str) -> str | None:
        if self.missing_as_null:
            return None
        raise PartitionValueError(rule.text, record.topic, record.partition, record.offset, reason)


def _as_document(raw: Any) -> Any:
    if isinstance(raw, (bytes, bytearray, str)):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return raw
