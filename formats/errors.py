"""Errors of the formats: each keeps what it is about (object key, record index or offset).
`FormatError` is the formats' layer base (core.errors; a ValueError too, as it always was)."""

from __future__ import annotations

from typing import overload

from core.errors import FormatError, RestoreError

__all__ = ["CorruptObjectError", "FormatError", "UnsupportedValueError"]


class CorruptObjectError(FormatError, RestoreError):
    """An object whose bytes or records are not what they should be: the one error for a corrupt
    object, wherever it is found.

    A codec raises it as `CorruptObjectError(object_key, record_index, reason)`, naming the record
    it could not decode (it knows no bucket); a reader of the bucket (a restore, its pre-flight, a
    verify) as `CorruptObjectError(bucket, key, reason)`, when the object differs from its manifest
    (size, sha256, record count) or cannot be decoded. Attributes: `key` (also `object_key`),
    `bucket` (None from a codec), `record_index` (None when no one record is to blame), `reason`.
    """

    @overload
    def __init__(self, object_key: str | None, record_index: int, reason: str, /) -> None: ...

    @overload
    def __init__(self, bucket: str, key: str, reason: str, /) -> None: ...

    def __init__(self, first: str | None, second: int | str, reason: str, /) -> None:
        self.bucket: str | None
        self.key: str | None
        self.record_index: int | None
        if isinstance(second, int):
            self.bucket, self.key, self.record_index = None, first, second
        else:
            self.bucket, self.key, self.record_index = first, second, None
        self.reason = reason
        if self.bucket is None:
            where = f"object {self.key or '(unnamed)'}"
        else:
            where = f"s3://{self.bucket}/{self.key}"
        at = f" at record {self.record_index}" if self.record_index is not None else ""
        super().__init__(f"{where} is corrupt{at}: {reason}")

    @property
    def object_key(self) -> str | None:
        return self.key


class UnsupportedValueError(FormatError):
    def __init__(self, offset: int, reason: str) -> None:
        self.offset = offset
        self.reason = reason
        super().__init__(f"record at offset {offset}: {reason}")


def undecodable(bucket: str, key: str, error: Exception, records_before: int) -> CorruptObjectError:
    """The error for an object of `bucket` that a codec could not decode: it names the object and
    the record (the codec's record index when it gave one, else the first record not decoded)."""
    if isinstance(error, CorruptObjectError):
        index = error.record_index if error.record_index is not None else records_before
        reason = error.reason
    else:
        index, reason = records_before, str(error) or type(error).__name__
    return CorruptObjectError(bucket, key, f"cannot decode record {index}: {reason}")
