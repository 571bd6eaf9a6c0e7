"""Running the connector config's Lenses SMTs: each yields headers computed from a record.

The headers they produce feed PARTITIONBY only; they are not written into the envelope, so a
backup stays a faithful copy of the topic. Times are rendered in the transform's `timezone`
(an IANA zone, UTC by default), and a date-time text without an offset is read in it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from formats.envelope import Header, Record
from kcql import InsertWallclockTransform, TimestampConverterTransform, Transform
from kcql.java_dates import java_date_formatter

HeaderTransform = Callable[[Record], list[Header]]
_PRECISION = {"seconds": 1000, "milliseconds": 1, "microseconds": 1 / 1000, "nanoseconds": 1 / 1_000_000}


def _field_millis(transform: TimestampConverterTransform, record: Record) -> int | None:
    field = transform.field
    if field == "_timestamp":
        return record.timestamp
    source, path = (
        (record.key, field[5:])
        if field.startswith("_key.")
        else (record.value, field.removeprefix("_value."))
    )
    try:
        document = json.loads(source) if isinstance(source, (bytes, str)) else source
        for step in path.split("."):
            document = document[step]
    except (ValueError, KeyError, TypeError):
        return None
    if isinstance(document, (int, float)):
        return int(document * _PRECISION[transform.unix_precision])
    if isinstance(document, str) and transform.format_from_pattern is None:
        try:
            moment = datetime.fromisoformat(document.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(transform.timezone))
        return int(moment.timestamp() * 1000)
    return None


def _render(millis: int, target_type: str, pattern: str | None, timezone: str) -> bytes:
    if target_type == "unix":
        return str(millis).encode()
    moment = datetime.fromtimestamp(millis / 1000, UTC if timezone == "UTC" else ZoneInfo(timezone))
    if pattern:
        return java_date_formatter(pattern)(moment).encode()
    return moment.isoformat().encode()


def compile_transform(transform: Transform) -> HeaderTransform:
    if isinstance(transform, TimestampConverterTransform):

        def convert(record: Record) -> list[Header]:
            millis = _field_millis(transform, record)
            return (
                []
                if millis is None
                else [
                    (
                        transform.header_name,
                        _render(
                            millis, transform.target_type, transform.format_to_pattern, transform.timezone
                        ),
                    )
                ]
            )

        return convert
    assert isinstance(transform, InsertWallclockTransform)

    def wallclock(_record: Record) -> list[Header]:
        now = int(datetime.now(UTC).timestamp() * 1000)
        return [
            (
                transform.header_name,
                _render(
                    now,
                    "unix" if transform.value_type == "epoch" else "string",
                    transform.format,
                    transform.timezone,
                ),
            )
        ]

    return wallclock


def compile_transforms(transforms: Sequence[Transform]) -> tuple[HeaderTransform, ...]:
    return tuple(compile_transform(t) for t in transforms)
