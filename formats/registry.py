"""The codecs, by STOREAS name: an explicit list turned into a dict at import time."""

from __future__ import annotations

from formats.avro import AvroCodec
from formats.codec import Codec
from formats.errors import FormatError
from formats.jsonl import JsonCodec
from formats.parquet import ParquetCodec
from formats.value_only import BytesCodec, CsvCodec, TextCodec

_ALL: list[Codec] = [
    AvroCodec(),
    ParquetCodec(),
    JsonCodec(),
    CsvCodec(headers=False),
    CsvCodec(headers=True),
    TextCodec(),
    BytesCodec(),
]
CODECS: dict[str, Codec] = {codec.spec.name: codec for codec in _ALL}


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name.upper()]
    except KeyError:
        raise FormatError(f"unknown format {name!r}; valid: {', '.join(CODECS)}") from None
