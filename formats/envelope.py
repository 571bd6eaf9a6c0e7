"""The lossless envelope: one Kafka record with nothing dropped.

`Record` is the unit every codec writes and reads and every task passes around. It is a
plain slotted dataclass (not a pydantic model) because millions of them go through a backup.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

Header = tuple[str, bytes | None]
"""One header: its name and its value; a null value is kept as None."""


class TimestampType(IntEnum):
    """Kafka's timestamp types, numbered as librdkafka numbers them."""

    NO_TIMESTAMP_TYPE = 0
    CREATE_TIME = 1
    LOG_APPEND_TIME = 2

    @property
    def label(self) -> str:
        return _LABELS[self]

    @classmethod
    def from_label(cls, label: str) -> TimestampType:
        try:
            return _BY_LABEL[label]
        except KeyError:
            raise ValueError(
                f"unknown timestamp type {label!r}; expected one of {sorted(_BY_LABEL)}"
            ) from None


_LABELS = {
    TimestampType.NO_TIMESTAMP_TYPE: "NoTimestampType",
    TimestampType.CREATE_TIME: "CreateTime",
    TimestampType.LOG_APPEND_TIME: "LogAppendTime",
}
_BY_LABEL = {label: ts_type for ts_type, label in _LABELS.items()}


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record.

    `key` and `value` are bytes (or None) with the `bytes` converter; with another converter
    they hold the converted value (str, or a JSON document as dict/list/scalars).
    """

    key: Any
    value: Any
    headers: tuple[Header, ...]
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    timestamp_type: TimestampType = TimestampType.CREATE_TIME
