"""PARTITIONBY: the value of each partition field for one record.

Field values come from the key/value decoded when a path is asked for — as Avro with its
registry schema when that side's converter is `avro` (the Confluent wire format), else as JSON (a
JSON object, whatever the converter stores) — from headers as UTF-8 text, from the record's topic and
partition, or from its timestamp formatted with the field's date pattern.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import fastavro

from core.errors import FormatError
from formats.envelope import Header, Record
from formats.wire import PREFIX, wire_id

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

    def __init__(
        self,
        rules: Sequence[FieldRule],
        missing_as_null: bool,
        decoders: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> None:
        """`decoders`: per side (`key`, `value`), how its bytes become a document (JSON otherwise)."""
        self.rules = tuple(rules)
        self.missing_as_null = missing_as_null
        self.decoders = dict(decoders or {})

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
        decoder = self.decoders.get(rule.source)
        if rule.source not in decoded:
            decoded[rule.source] = _as_document(raw) if decoder is None else decoder(raw)
        document = decoded[rule.source]
        for step in rule.path:
            if not isinstance(document, dict):
                kind = "JSON object" if decoder is None else "Avro record (in the wire format)"
                return self._missing(rule, record, f"the {rule.source} is not a {kind}")
            if step not in document:
                return self._missing(rule, record, f"the {rule.source} has no field {'.'.join(rule.path)!r}")
            document = document[step]
        return scalar_text(document)

    def _missing(self, rule: FieldRule, record: Record, reason: str) -> str | None:
        if self.missing_as_null:
            return None
        raise PartitionValueError(rule.text, record.topic, record.partition, record.offset, reason)


def avro_decoder(lookup: Callable[[int], Any]) -> Callable[[Any], Any]:
    """Bytes in the Confluent wire format → the Avro datum, by its registry schema (`lookup`:
    schema id → fastavro's parsed schema); None for anything else (or an unknown id)."""

    def decode(raw: Any) -> Any:
        schema_id = wire_id(bytes(raw)) if isinstance(raw, (bytes, bytearray)) else None
        if schema_id is None:
            return None
        try:
            return fastavro.schemaless_reader(io.BytesIO(raw[PREFIX:]), lookup(schema_id), None)
        except (KeyError, ValueError, EOFError, IndexError, TypeError):
            return None

    return decode


def _as_document(raw: Any) -> Any:
    if isinstance(raw, (bytes, bytearray, str)):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return raw
