"""The Lenses SMTs a connector config may name, as typed settings."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

TIMESTAMP_CONVERTER = "io.lenses.connect.smt.header.TimestampConverter"
INSERT_WALLCLOCK = "io.lenses.connect.smt.header.InsertWallclock"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimestampConverterTransform(_Frozen):
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


class InsertWallclockTransform(_Frozen):
    """Writes the wall-clock time at export into header `header_name`."""

    type: Literal["InsertWallclock"] = "InsertWallclock"
    name: str
    header_name: str
    value_type: Literal["format", "epoch"] = "format"
    format: str | None = None
    timezone: str = "UTC"


Transform = TimestampConverterTransform | InsertWallclockTransform
