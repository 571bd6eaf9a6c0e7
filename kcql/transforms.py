"""The Lenses SMTs a connector config may name, as typed settings."""

from __future__ import annotations

from typing import Literal

from core.models import FrozenModel

TIMESTAMP_CONVERTER = "io.lenses.connect.smt.header.TimestampConverter"
INSERT_WALLCLOCK = "io.lenses.connect.smt.header.InsertWallclock"


class TimestampConverterTransform(FrozenModel):
    """Reads a timestamp from `field` (`_timestamp` = the record's, `_key.a`, `_value.a` or `a`) and
    writes it, converted, into header `header_name`."""

    type: Literal["TimestampConverter"] = "TimestampConverter"
    name: str
    header_name: str
    field: str = "_timestamp"
    target_type: Literal["string", "unix", "date", "time", "timestamp"] = "string"
    format_to_pattern: str | None = None
    format_from_pattern: str | None = None
    unix_precision: Literal["seconds", "milliseconds", "microseconds", "nanoseconds"] = "milliseconds"
    timezone: str = "UTC"


class InsertWallclockTransform(FrozenModel):
    """Writes the wall-clock time at export into header `header_name`."""

    type: Literal["InsertWallclock"] = "InsertWallclock"
    name: str
    header_name: str
    value_type: Literal["format", "epoch"] = "format"
    format: str | None = None
    timezone: str = "UTC"


Transform = TimestampConverterTransform | InsertWallclockTransform
