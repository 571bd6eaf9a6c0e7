"""The envelope ↔ bytes: one codec per format behind one interface, and the records digest.

Pure: no Prefect, boto3 or confluent-kafka here.
"""

from formats.codec import Codec, CodecContext, CodecSpec, ObjectWriter
from formats.digest import RecordsDigest, records_digest
from formats.envelope import Header, Record, TimestampType
from formats.errors import CorruptObjectError, FormatError, UnsupportedValueError
from formats.registry import CODECS, get_codec

__all__ = [
    "CODECS",
    "Codec",
    "CodecContext",
    "CodecSpec",
    "CorruptObjectError",
    "FormatError",
    "Header",
    "ObjectWriter",
    "Record",
    "RecordsDigest",
    "TimestampType",
    "UnsupportedValueError",
    "get_codec",
    "records_digest",
]
