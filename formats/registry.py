"""The codecs, by STOREAS name: an explicit list turned into a dict at import time.

The one source of each format's facts (file extension, compressions, whether it carries the
envelope): kcql/ and the restore's discovery ask here instead of keeping their own tables.
"""

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

# Other spellings of an extension found in buckets of data written without a manifest, read as
# the format named. Every codec's own extension reads as that codec; where two codecs share one
# (.csv), the first in the list above reads it (CSV: a header line cannot be told from a value).
_OTHER_EXTENSIONS = {"jsonl": "JSON", "txt": "TEXT", "bin": "BYTES"}


def _extensions() -> dict[str, str]:
    extensions: dict[str, str] = {}
    for codec in _ALL:
        extensions.setdefault(codec.spec.extension, codec.spec.name)
    return {**extensions, **_OTHER_EXTENSIONS}


EXTENSIONS: dict[str, str] = _extensions()


def get_codec(name: str) -> Codec:
    try:
        return CODECS[name.upper()]
    except KeyError:
        raise FormatError(f"unknown format {name!r}; valid: {', '.join(CODECS)}") from None


def format_of_extension(extension: str) -> str | None:
    """The format an object with this file extension (no dot, any case) is read as, if any."""
    return EXTENSIONS.get(extension.lower())


def supports_envelope(name: str) -> bool:
    """Whether the format (any case) can carry the envelope; False for a name no codec has."""
    codec = CODECS.get(name.upper())
    return codec is not None and codec.spec.supports_envelope
