"""Errors of the formats: each keeps what it is about (object key, record index or offset)."""

from __future__ import annotations


class FormatError(ValueError):
    """Base of the formats' errors."""


class CorruptObjectError(FormatError):
    def __init__(self, object_key: str | None, record_index: int, reason: str) -> None:
        self.object_key = object_key
        self.record_index = record_index
        self.reason = reason
        super().__init__(f"object {object_key or '(unnamed)'} is corrupt at record {record_index}: {reason}")


class UnsupportedValueError(FormatError):
    def __init__(self, offset: int, reason: str) -> None:
        self.offset = offset
        self.reason = reason
        super().__init__(f"record at offset {offset}: {reason}")
