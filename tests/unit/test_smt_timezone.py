"""The Lenses SMTs' `timezone` setting: rendered in it, read in it, and an unknown zone refused."""

from __future__ import annotations

import pytest

from formats.envelope import Record
from kcql import KcqlError, TimestampConverterTransform, parse_connector_config
from layout.transforms import compile_transform

MIDNIGHT_UTC = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CONFIG = """topics=payments
connect.s3.kcql=INSERT INTO backups:p SELECT * FROM payments PARTITIONBY _header.ts STOREAS AVRO
transforms=partitionTs
transforms.partitionTs.type=io.lenses.connect.smt.header.TimestampConverter
transforms.partitionTs.header.name=ts
transforms.partitionTs.format.to.pattern=yyyy-MM-dd'/hour='HH
transforms.partitionTs.timezone={zone}
"""


def _record(value: bytes | None = None, timestamp: int | None = MIDNIGHT_UTC) -> Record:
    return Record(
        key=None, value=value, headers=(), topic="payments", partition=0, offset=0, timestamp=timestamp
    )


def _converter(zone: str, **settings: str) -> TimestampConverterTransform:
    return TimestampConverterTransform(name="t", header_name="ts", timezone=zone, **settings)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", b"2026-01-01/hour=00"),
        ("Europe/Amsterdam", b"2026-01-01/hour=01"),
        ("America/New_York", b"2025-12-31/hour=19"),
    ],
)
def test_the_record_timestamp_is_rendered_in_the_transforms_time_zone(zone, expected):
    convert = compile_transform(_converter(zone, format_to_pattern="yyyy-MM-dd'/hour='HH"))
    assert convert(_record()) == [("ts", expected)]


def test_a_date_time_without_an_offset_is_read_in_the_transforms_time_zone():
    convert = compile_transform(_converter("Europe/Amsterdam", field="_value.at", target_type="unix"))
    assert convert(_record(b'{"at": "2026-01-01T01:00:00"}')) == [("ts", str(MIDNIGHT_UTC).encode())]
    assert convert(_record(b'{"at": "2026-01-01T01:00:00+01:00"}')) == [("ts", str(MIDNIGHT_UTC).encode())]


def test_the_connector_config_carries_the_time_zone():
    [transform] = parse_connector_config(CONFIG.format(zone="Asia/Tokyo")).transforms
    assert transform.timezone == "Asia/Tokyo"


def test_an_unknown_time_zone_is_refused_naming_its_line():
    with pytest.raises(KcqlError) as caught:
        parse_connector_config(CONFIG.format(zone="Mars/Olympus"))
    message = str(caught.value)
    assert "line 7" in message and "IANA time zone" in message and "Mars/Olympus" in message
