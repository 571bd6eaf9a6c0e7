"""Grouping one partition's records into objects by the flush rules.

`ObjectRoller` is pure: records in, finished objects (bytes + what the manifest says of them) out.
An object rolls when it reaches `flush.count` records, when its encoded size reaches
`flush.size`, or when its records' timestamps span `flush.interval` seconds. The interval is
measured on the records' own timestamps, not the wall clock, so that a retried export cuts
exactly the same objects and writes the same keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from formats import Codec, CodecContext, ObjectWriter, RecordsDigest
from formats.digest import digest_input
from formats.envelope import Record
from layout.keys import KeyNaming

# Records are handed to a writer in batches; a batch is written early when it holds this many
# bytes, so that the size rule is checked often enough for large values.
BATCH_RECORDS = 2000
BATCH_BYTES = 1 << 20


@dataclass(frozen=True)
class FlushRules:
    count: int = 50_000
    size: int = 500_000_000
    interval_seconds: int = 3600


@dataclass(frozen=True)
class FinishedObject:
    key: str
    data: bytes
    first_offset: int
    last_offset: int
    record_count: int
    min_timestamp: int | None
    max_timestamp: int | None
    records_digest: str
    partition_values: dict[str, str | None]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class _OpenObject:
    writer: ObjectWriter
    values: tuple[str | None, ...]
    digest: RecordsDigest = field(default_factory=RecordsDigest)
    batch: list[Record] = field(default_factory=list)
    batch_bytes: int = 0
    first_offset: int = -1
    last_offset: int = -1
    count: int = 0
    first_timestamp: int | None = None
    min_timestamp: int | None = None
    max_timestamp: int | None = None


def _record_bytes(record: Record) -> int:
    size = 64
    for part in (record.key, record.value):
        if isinstance(part, (bytes, str)):
            size += len(part)
    for name, value in record.headers:
        size += len(name) + (len(value) if value else 0)
    return size


class ObjectRoller:
    """Rolls one Kafka partition's records into objects (one open object per PARTITIONBY group)."""

    def __init__(
        self,
        codec: Codec,
        context: CodecContext,
        naming: KeyNaming,
        rules: FlushRules,
    ) -> None:
        self.codec = codec
        self.context = context
        self.naming = naming
        self.rules = rules
        self._open: dict[tuple[str | None, ...], _OpenObject] = {}

    def add(
        self, record: Record, values: tuple[str | None, ...] = (), digest_bytes: bytes | None = None
    ) -> Iterator[FinishedObject]:
        """Add one record (in offset order); yields the objects this record caused to finish.

        `digest_bytes` is the record's formats.digest.digest_input, when the caller has it already.
        """
        current = self._open.get(values)
        if current is not None and self._interval_reached(current, record.timestamp):
            yield self._finish(values)
            current = None
        if current is None:
            current = self._open[values] = _OpenObject(self.codec.writer(self.context), values)
            current.first_offset = record.offset
            current.first_timestamp = record.timestamp
        current.batch.append(record)
        current.batch_bytes += _record_bytes(record)
        current.last_offset = record.offset
        current.count += 1
        if digest_bytes is None:
            digest_bytes = digest_input(
                record.key, record.value, record.headers, record.timestamp, int(record.timestamp_type)
            )
        current.digest.update_input(digest_bytes)
        if record.timestamp is not None:
            if current.min_timestamp is None or record.timestamp < current.min_timestamp:
                current.min_timestamp = record.timestamp
            if current.max_timestamp is None or record.timestamp > current.max_timestamp:
                current.max_timestamp = record.timestamp
        if current.count >= self.rules.count:
            yield self._finish(values)
        elif len(current.batch) >= BATCH_RECORDS or current.batch_bytes >= BATCH_BYTES:
            self._write_batch(current)
            if current.writer.size_estimate >= self.rules.size:
                yield self._finish(values)

    def finish_all(self) -> Iterator[FinishedObject]:
        """Finish every open object, in the order of their first offsets."""
        for values in sorted(self._open, key=lambda v: self._open[v].first_offset):
            yield self._finish(values)

    @property
    def open_bytes(self) -> int:
        return sum(o.writer.size_estimate + o.batch_bytes for o in self._open.values())

    def _interval_reached(self, current: _OpenObject, timestamp: int | None) -> bool:
        if timestamp is None or current.first_timestamp is None:
            return False
        return timestamp - current.first_timestamp >= self.rules.interval_seconds * 1000

    def _write_batch(self, current: _OpenObject) -> None:
        if current.batch:
            current.writer.write(current.batch)
            current.batch = []
            current.batch_bytes = 0

    def _finish(self, values: tuple[str | None, ...]) -> FinishedObject:
        current = self._open.pop(values)
        self._write_batch(current)
        data = current.writer.finish()
        key = self.naming.object_key(self.context.topic, self.context.partition, current.last_offset, values)
        return FinishedObject(
            key=key,
            data=data,
            first_offset=current.first_offset,
            last_offset=current.last_offset,
            record_count=current.count,
            min_timestamp=current.min_timestamp,
            max_timestamp=current.max_timestamp,
            records_digest=current.digest.hexdigest(),
            partition_values=dict(zip(self.naming.partition_names, values, strict=True)),
        )
