"""Codecs: lossless round trips (hypothesis), value-only limits, Stream Reactor files, corruption."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formats import (
    CodecContext,
    CorruptObjectError,
    FormatError,
    Record,
    TimestampType,
    UnsupportedValueError,
    get_codec,
    records_digest,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"  # tests/fixtures (see its README)

nullable_bytes = st.one_of(st.none(), st.just(b""), st.binary(max_size=64))
headers = st.lists(
    st.tuples(st.sampled_from(["a", "a", "ü-名前", "trace", ""]) | st.text(max_size=8), nullable_bytes),
    max_size=5,
)


@st.composite
def record_lists(draw: st.DrawFn) -> list[Record]:
    count = draw(st.integers(1, 20))
    first = draw(st.integers(0, 2**63 - 1 - count))
    return [
        Record(
            draw(nullable_bytes),
            draw(nullable_bytes),
            tuple(draw(headers)),
            "topic-ü",
            7,
            first + i,
            draw(st.one_of(st.none(), st.integers(-(2**62), 2**62))),
            draw(st.sampled_from(list(TimestampType))),
        )
        for i in range(count)
    ]


def _round_trip(fmt: str, records: list[Record], **options: object) -> list[Record]:
    codec = get_codec(fmt)
    writer = codec.writer(CodecContext("topic-ü", 7, envelope=True, **options))  # type: ignore[arg-type]
    writer.write(records[: len(records) // 2])
    writer.write(records[len(records) // 2 :])
    data = writer.finish()
    return list(codec.reader(io.BytesIO(data), CodecContext("topic-ü", 7, object_key="k")))


@pytest.mark.parametrize("fmt", ["AVRO", "PARQUET", "JSON"])
@settings(max_examples=60, deadline=None)
@given(records=record_lists())
def test_envelope_round_trip_is_lossless(fmt: str, records: list[Record]) -> None:
    back = _round_trip(fmt, records)
    assert back == records
    assert records_digest(back) == records_digest(records)


@pytest.mark.parametrize(
    ("fmt", "compression"),
    [(f, c) for f in ("AVRO", "PARQUET", "JSON") for c in get_codec(f).spec.compressions],
)
@settings(max_examples=5, deadline=None)
@given(records=record_lists())
def test_every_compression_round_trips(fmt: str, compression: str, records: list[Record]) -> None:
    assert _round_trip(fmt, records, compression=compression) == records


AVRO_FILE_CODECS = {"null": "null", "deflate": "deflate", "snappy": "snappy", "zstd": "zstandard"}


def _avro_file_codec(data: bytes) -> str:
    import fastavro

    return fastavro.reader(io.BytesIO(data)).codec


@pytest.mark.parametrize("compression", sorted(AVRO_FILE_CODECS))
def test_avro_compressions_write_their_codec_and_round_trip(compression: str) -> None:
    """Each codec is the one in the file's header (snappy through cramjam, zstd through
    backports.zstd: nothing falls back) and its records read back equal."""
    records = _fixture_records()
    writer = get_codec("AVRO").writer(CodecContext("orders", 3, envelope=True, compression=compression))
    writer.write(records)
    data = writer.finish()
    assert _avro_file_codec(data) == AVRO_FILE_CODECS[compression]
    assert list(get_codec("AVRO").reader(data, CodecContext("orders", 3))) == records


def test_avro_default_is_zstd_level_1() -> None:
    """The default chosen by bench/avro_codecs.py (bench/README.md, "AVRO codecs")."""
    records = _fixture_records() * 20
    codec = get_codec("AVRO")
    default = codec.writer(CodecContext("orders", 3, envelope=True))
    default.write(records)
    level_1 = codec.writer(CodecContext("orders", 3, envelope=True, compression="zstd", compression_level=1))
    level_1.write(records)
    data = default.finish()
    assert codec.spec.default_compression == "zstd"
    assert _avro_file_codec(data) == "zstandard"
    assert data == level_1.finish()  # the same blocks and the same sync marker


@pytest.mark.parametrize("columns", [True, False])
def test_avro_objects_are_deterministic(columns: bool) -> None:
    """The same records encode to the same bytes (the sync marker comes from the object's topic,
    partition and first offset, not from urandom): a retried export uploads an identical object,
    which ObjectStore.put_once accepts instead of raising ObjectConflictError. Objects that
    start elsewhere get another marker."""
    import fastavro

    from formats.columns import from_records

    def encode(records: list[Record], partition: int = 3) -> bytes:
        writer = get_codec("AVRO").writer(CodecContext("orders", partition, envelope=True))
        if columns:
            writer.write_columns(from_records(records))
        else:
            writer.write(records)
        return writer.finish()

    records = _fixture_records()
    data = encode(records)
    assert encode(records) == data
    assert list(get_codec("AVRO").reader(data, CodecContext("orders", 3))) == records
    marker = fastavro.reader(io.BytesIO(data))._header["sync"]  # type: ignore[attr-defined]
    assert fastavro.reader(io.BytesIO(encode(records[1:])))._header["sync"] != marker  # type: ignore[attr-defined]
    assert fastavro.reader(io.BytesIO(encode(records, 4)))._header["sync"] != marker  # type: ignore[attr-defined]


def _fixture_records() -> list[Record]:
    """The records of tests/fixtures/kbackup-avro/deflate-envelope.avro."""
    return [
        Record(
            None if i % 7 == 0 else f"key-{i:03d}".encode(),
            None if i % 5 == 0 else f'{{"id":{i},"region":"EMEA"}}'.encode() * (i % 3 + 1),
            (("trace", f"{i:016x}".encode()), ("dup", None), ("dup", b"")) if i % 2 else (),
            "orders",
            3,
            1000 + i,
            None if i % 11 == 0 else 1_790_000_000_000 + i,
            TimestampType.LOG_APPEND_TIME if i % 4 == 0 else TimestampType.CREATE_TIME,
        )
        for i in range(30)
    ]


def test_avro_deflate_backups_still_restore() -> None:
    """An envelope object written by the AVRO default before zstd (deflate, level 1): the reader
    takes the codec from each file's header, so the change of default leaves old backups readable."""
    data = (FIXTURES / "kbackup-avro" / "deflate-envelope.avro").read_bytes()
    assert _avro_file_codec(data) == "deflate"
    assert list(get_codec("AVRO").reader(data, CodecContext("orders", 3))) == _fixture_records()


def test_json_keeps_text_and_base64_apart() -> None:
    records = [
        Record(
            b'{"$base64": "AA=="}', b"\xff\x00", (("h", b"plain"),), "t", 0, 0, 1, TimestampType.CREATE_TIME
        )
    ]
    assert _round_trip("JSON", records) == records


def _value_only(fmt: str, values: list[bytes]) -> list[bytes | None]:
    codec = get_codec(fmt)
    writer = codec.writer(CodecContext("t", 0))
    writer.write([Record(None, v, (), "t", 0, i, None) for i, v in enumerate(values)])
    return [r.value for r in codec.reader(writer.finish(), CodecContext("t", 0))]


def test_value_only_formats_keep_the_value() -> None:
    assert _value_only("TEXT", [b"one", "zwei ü".encode(), b""]) == [b"one", "zwei ü".encode(), b""]
    assert _value_only("BYTES", [b"\x00\xff", b"", b"x" * 1000]) == [b"\x00\xff", b"", b"x" * 1000]
    assert _value_only("CSV_WITHHEADERS", [b'{"a": "x", "b": "1.5"}', b'{"a": "y", "b": null}']) == [
        b'{"a":"x","b":"1.5"}',
        b'{"a":"y","b":null}',
    ]


def test_value_only_formats_refuse_what_they_cannot_hold() -> None:
    with pytest.raises(UnsupportedValueError) as error:
        _value_only("TEXT", [b"ok", b"two\nlines"])
    assert error.value.offset == 1 and "line break" in error.value.reason
    with pytest.raises(UnsupportedValueError) as error:
        _value_only("CSV", [b"[1, 2]"])
    assert "JSON-object" in error.value.reason
    with pytest.raises(FormatError):
        get_codec("XML")


@pytest.mark.parametrize(
    ("folder", "fmt"),
    [
        ("avro", "AVRO"),
        ("parquet", "PARQUET"),
        ("json", "JSON"),
        ("csv", "CSV"),
        ("csv_withheaders", "CSV_WITHHEADERS"),
    ],
)
def test_stream_reactor_value_files_decode(folder: str, fmt: str) -> None:
    files = sorted((FIXTURES / "stream-reactor" / folder).iterdir())
    assert len(files) == 5
    for path in files:
        rows = list(get_codec(fmt).reader(path.read_bytes(), CodecContext("t", 0, object_key=str(path))))
        assert len(rows) == 200
        assert rows[0].value.startswith(b"{") and rows[0].key is None


@pytest.mark.parametrize("name", ["envelope.avro", "envelope.json"])
def test_stream_reactor_envelopes_decode(name: str) -> None:
    path = FIXTURES / "stream-reactor-envelope" / name
    records = list(get_codec(name.split(".")[1]).reader(path.read_bytes(), CodecContext("x", 0)))
    assert [(r.topic, r.partition, r.offset, r.timestamp) for r in records] == [
        ("myTopic", 3, i, 1234567890 + i) for i in range(3)
    ]
    assert records[0].key == b'{"id":"1"}'
    assert records[0].headers == (("header1", b"value1"), ("header2", b"123456789"))


@pytest.mark.parametrize("fmt", ["AVRO", "PARQUET", "JSON"])
def test_truncated_objects_name_key_and_record(fmt: str) -> None:
    records = [Record(b"k", b"v" * 100, (), "t", 0, i, 1) for i in range(50)]
    codec = get_codec(fmt)
    writer = codec.writer(
        CodecContext("t", 0, envelope=True, compression="none" if fmt != "AVRO" else "null")
    )
    writer.write(records)
    data = writer.finish()
    with pytest.raises(CorruptObjectError) as error:
        list(
            codec.reader(
                data[: len(data) * 2 // 3],
                CodecContext("t", 0, object_key="bk/t/0/000000000049." + fmt.lower()),
            )
        )
    assert error.value.object_key.endswith(fmt.lower())
    assert "bk/t/0/000000000049" in str(error.value) and "record" in str(error.value)


def test_parquet_envelope_is_readable_by_pyarrow_dataset_and_duckdb(tmp_path: Path) -> None:
    import duckdb

    writer = get_codec("PARQUET").writer(CodecContext("t", 2, envelope=True))
    writer.write([Record(b"k", b"v", (("h", b"1"),), "t", 2, 5, 9, TimestampType.LOG_APPEND_TIME)])
    path = tmp_path / "x.parquet"
    path.write_bytes(writer.finish())
    table = ds.dataset(str(path)).to_table()
    assert table.schema.names == ["key", "value", "headers", "metadata"]
    row = duckdb.sql(
        f"SELECT metadata.offset, metadata.timestamp_type, headers[1].key FROM '{path}'"
    ).fetchall()[0]
    assert row == (5, "LogAppendTime", "h")


def _envelope_document(r: Record, part: Callable[[Any], Any]) -> dict[str, Any]:
    """The envelope as the generic writers (fastavro, json.dumps) take it."""
    return {
        "key": part(r.key),
        "value": part(r.value),
        "headers": [{"key": n, "value": part(v)} for n, v in r.headers],
        "metadata": {
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "timestamp_type": r.timestamp_type.label,
        },
    }


@settings(max_examples=100, deadline=None)
@given(records=record_lists())
def test_hand_built_avro_bodies_equal_fastavros_encoding(records: list[Record]) -> None:
    import fastavro

    from formats.avro import ENVELOPE_SCHEMA
    from formats.avro_binary import encode_envelopes

    expected = io.BytesIO()
    for r in records:
        fastavro.schemaless_writer(
            expected,
            ENVELOPE_SCHEMA,
            _envelope_document(r, lambda part: part),
        )
    assert encode_envelopes(records) == expected.getvalue()


@settings(max_examples=100, deadline=None)
@given(records=record_lists())
def test_json_envelope_lines_are_the_documents_json_dumps_gives(records: list[Record]) -> None:
    import json

    from formats.columns import from_records
    from formats.jsonl import encode_bytes

    writer = get_codec("JSON").writer(CodecContext("topic-ü", 7, envelope=True))
    writer.write(records)
    lines = writer.finish().decode().rstrip("\n").split("\n")
    columns = get_codec("JSON").writer(CodecContext("topic-ü", 7, envelope=True))
    columns.write_columns(from_records(records))
    assert columns.finish().decode().rstrip("\n").split("\n") == lines
    assert lines == [
        json.dumps(
            _envelope_document(r, encode_bytes),
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for r in records
    ]


# --- the columnar interface (write_columns / read_columns) ---------------------------------------

ENVELOPE_PARTS = ("envelope_key", "envelope_value", "envelope_headers", "envelope_metadata")


def _decoded_records(batches: Any) -> list[Record]:
    """DECODED batches as Records, each with its own topic and partition."""
    from formats.columns import DECODED, to_records

    out = []
    for batch in batches:
        assert batch.schema == DECODED
        topics = batch.column("topic").to_pylist()
        partitions = batch.column("partition").to_pylist()
        for record, topic, partition in zip(to_records(batch, "", 0), topics, partitions, strict=True):
            out.append(
                Record(
                    record.key,
                    record.value,
                    record.headers,
                    topic,
                    partition,
                    record.offset,
                    record.timestamp,
                    record.timestamp_type,
                )
            )
    return out


def _kept(records: list[Record], parts: dict[str, bool]) -> list[Record]:
    """What an envelope keeps of the records with the envelope-part switches `parts`."""
    return [
        Record(
            r.key if parts["envelope_key"] else None,
            r.value if parts["envelope_value"] else None,
            r.headers if parts["envelope_headers"] else (),
            r.topic,
            r.partition,
            r.offset if parts["envelope_metadata"] else i,
            r.timestamp if parts["envelope_metadata"] else None,
            r.timestamp_type if parts["envelope_metadata"] else TimestampType.NO_TIMESTAMP_TYPE,
        )
        for i, r in enumerate(records)
    ]


def _write(fmt: str, records: list[Record], columns: bool, **options: Any) -> bytes:
    from formats.columns import from_records

    writer = get_codec(fmt).writer(CodecContext("topic-ü", 7, **options))
    for chunk in (records[: len(records) // 2], records[len(records) // 2 :]):
        if columns:
            writer.write_columns(from_records(chunk))
        else:
            writer.write(chunk)
    assert writer.record_count == len(records)
    return writer.finish()


def _read_columns(fmt: str, data: bytes) -> list[Record]:
    from formats.columns import from_records

    codec = get_codec(fmt)
    context = CodecContext("topic-ü", 7, object_key="k")
    back = _decoded_records(codec.read_columns(io.BytesIO(data), context))
    # the columnar reader gives what the per-record reader gives
    assert from_records(back, decoded=True) == from_records(codec.reader(data, context), decoded=True)
    return back


@pytest.mark.parametrize("fmt", ["AVRO", "PARQUET", "JSON"])
@settings(max_examples=60, deadline=None)
@given(records=record_lists(), switches=st.tuples(*[st.booleans()] * 4))
def test_envelope_round_trip_through_columns(
    fmt: str, records: list[Record], switches: tuple[bool, ...]
) -> None:
    """write_columns → read_columns keeps every record (and the envelope-part switches drop what
    they drop), and objects written by the per-record writer read the same through columns."""
    parts = dict(zip(ENVELOPE_PARTS, switches, strict=True))
    expected = _kept(records, parts)
    from_columns = _write(fmt, records, True, envelope=True, **parts)
    from_records_ = _write(fmt, records, False, envelope=True, **parts)
    assert _read_columns(fmt, from_columns) == expected
    assert _read_columns(fmt, from_records_) == expected


@pytest.mark.parametrize("fmt", ["AVRO", "PARQUET", "JSON", "TEXT", "BYTES"])
@settings(max_examples=30, deadline=None)
@given(
    records=record_lists(),
    text=st.lists(st.text(max_size=20).filter(lambda t: "\n" not in t and "\r" not in t)),
)
def test_value_only_round_trip_through_columns(fmt: str, records: list[Record], text: list[str]) -> None:
    if fmt in ("TEXT", "JSON"):
        values: list[bytes | None] = [t.encode() for t in text] or [b"x"]
    elif fmt == "BYTES":
        values = [r.value or b"" for r in records]
    else:
        values = [r.value for r in records]
    records = [Record(None, v, (), "topic-ü", 7, i, None) for i, v in enumerate(values)]
    expected = [
        Record(None, v, (), "topic-ü", 7, i, None, TimestampType.NO_TIMESTAMP_TYPE)
        for i, v in enumerate(values)
    ]
    if fmt == "JSON":  # a value that is JSON text is stored as the document and read back compact
        import json

        expected = [
            r
            if _not_json(r.value)
            else Record(
                None,
                _compact(json.loads(r.value)),
                (),
                "topic-ü",
                7,
                r.offset,
                None,
                TimestampType.NO_TIMESTAMP_TYPE,
            )
            for r in expected
        ]
    assert _read_columns(fmt, _write(fmt, records, True)) == expected
    assert _read_columns(fmt, _write(fmt, records, False)) == expected


def _not_json(value: bytes) -> bool:
    import json

    try:
        json.loads(value)
    except ValueError:
        return True
    return False


def _compact(document: Any) -> bytes | None:
    from formats.codec import compact_json

    if document is None:
        return None
    if isinstance(document, str):
        return document.encode()
    return compact_json(document)


def _fixture_files() -> list[tuple[str, Path]]:
    extensions = {".avro": "AVRO", ".parquet": "PARQUET", ".json": "JSON", ".csv": None}
    found = []
    for path in sorted(FIXTURES.rglob("*")):
        fmt = extensions.get(path.suffix)
        if fmt and path.is_file() and "_manifests" not in path.parts and path.name != "expected.json":
            found.append((fmt, path))
    return found


@pytest.mark.parametrize(("fmt", "path"), _fixture_files(), ids=lambda v: str(v).split("fixtures/")[-1])
def test_fixture_objects_read_the_same_through_columns(fmt: str, path: Path) -> None:
    """Objects of older versions and of Stream Reactor: read_columns gives what the per-record
    reader gives (same records, same topic and partition)."""
    from formats.columns import from_records

    codec = get_codec(fmt)
    data = path.read_bytes()
    context = CodecContext("fixture", 4, object_key=str(path))
    batches = list(codec.read_columns(data, context))
    assert _decoded_records(batches) == list(codec.reader(data, context))
    assert from_records(_decoded_records(batches), decoded=True).num_rows == sum(b.num_rows for b in batches)


@pytest.mark.parametrize("fmt", ["AVRO", "PARQUET", "JSON"])
def test_truncated_objects_name_key_and_record_through_columns(fmt: str) -> None:
    records = [Record(b"k", b"v" * 100, (), "t", 0, i, 1) for i in range(50)]
    codec = get_codec(fmt)
    writer = codec.writer(
        CodecContext("t", 0, envelope=True, compression="none" if fmt != "AVRO" else "null")
    )
    writer.write(records)
    data = writer.finish()
    key = "bk/t/0/000000000049." + fmt.lower()
    with pytest.raises(CorruptObjectError) as error:
        list(codec.read_columns(data[: len(data) * 2 // 3], CodecContext("t", 0, object_key=key)))
    assert error.value.object_key == key
    assert "record" in str(error.value)


@settings(max_examples=150, deadline=None)
@given(records=record_lists(), switches=st.tuples(*[st.booleans()] * 4))
def test_avro_bodies_from_columns_equal_fastavros_encoding(
    records: list[Record], switches: tuple[bool, ...]
) -> None:
    """The vectorised encoder (formats.avro_binary.encode_columns) against fastavro record by
    record, with every envelope-part switch."""
    import fastavro

    from formats.avro import ENVELOPE_SCHEMA, VALUE_SCHEMA
    from formats.avro_binary import encode_columns, encode_value_columns
    from formats.columns import from_records

    keep_key, keep_value, keep_headers, keep_metadata = switches
    expected = io.BytesIO()
    for r in records:
        document = _envelope_document(r, lambda part: part)
        document["key"] = document["key"] if keep_key else None
        document["value"] = document["value"] if keep_value else None
        document["headers"] = document["headers"] if keep_headers else []
        document["metadata"] = document["metadata"] if keep_metadata else None
        fastavro.schemaless_writer(expected, ENVELOPE_SCHEMA, document)
    batch = from_records(records)
    assert encode_columns(batch, "topic-ü", 7, *switches) == expected.getvalue()
    # a slice of a batch (the roller cuts objects from slices) encodes as its own records
    half = len(records) // 2
    assert encode_columns(batch.slice(half), "topic-ü", 7, *switches) == b"".join(
        encode_columns(from_records([r]), "topic-ü", 7, *switches) for r in records[half:]
    )
    values = io.BytesIO()
    for r in records:
        fastavro.schemaless_writer(values, VALUE_SCHEMA, {"value": r.value})
    assert encode_value_columns(batch.column("value")) == values.getvalue()


@pytest.mark.parametrize("fmt", ["AVRO", "PARQUET"])
def test_an_unknown_timestamp_type_names_its_record_through_columns(fmt: str) -> None:
    import fastavro
    import pyarrow as pa
    import pyarrow.parquet as pq

    from formats.avro import ENVELOPE_SCHEMA
    from formats.parquet import ENVELOPE

    documents = [_envelope_document(r, lambda part: part) for r in _fixture_records()[:5]]
    documents[3]["metadata"]["timestamp_type"] = "Bogus"
    buffer = io.BytesIO()
    if fmt == "AVRO":
        fastavro.writer(buffer, ENVELOPE_SCHEMA, documents)
    else:
        pq.write_table(pa.Table.from_pylist(documents, schema=ENVELOPE), buffer)
    with pytest.raises(CorruptObjectError) as error:
        list(get_codec(fmt).read_columns(buffer.getvalue(), CodecContext("t", 0, object_key="k")))
    assert (error.value.object_key, error.value.record_index) == ("k", 3)
    assert "Bogus" in error.value.reason


@settings(max_examples=100, deadline=None)
@given(records=record_lists(), data=st.data())
def test_avro_damaged_bodies_read_through_columns_as_record_by_record(
    records: list[Record], data: st.DataObject
) -> None:
    """A damaged block body (uncompressed, so the damage reaches the decoder): read_columns gives
    what the per-record reader gives, records or the CorruptObjectError naming the same record."""
    from formats.columns import from_records

    codec = get_codec("AVRO")
    blob = bytearray(_write("AVRO", records, True, envelope=True, compression="null"))
    position = data.draw(st.integers(len(blob) // 2, len(blob) - 1))
    blob[position] = data.draw(st.integers(0, 255))
    context = CodecContext("topic-ü", 7, object_key="k")
    try:
        expected = from_records(codec.reader(bytes(blob), context), decoded=True)
    except CorruptObjectError as error:
        with pytest.raises(CorruptObjectError) as through_columns:
            list(codec.read_columns(bytes(blob), context))
        assert through_columns.value.record_index == error.record_index
        return
    assert from_records(_decoded_records(codec.read_columns(bytes(blob), context)), decoded=True) == expected


def test_a_negative_length_in_an_avro_body_is_damage_not_an_empty_value() -> None:
    """A one-byte length of 1 is zig-zag -1: fastavro refuses it, and so must the column decoder
    (it once read it as 0 and went on, taking a damaged object for a good one)."""
    from formats.avro_binary import decode_envelopes

    body = (
        b"\x02\x01" + b"\x00" + b"\x00" + b"\x00"
    )  # key: present, length -1; value null; no headers, no metadata
    with pytest.raises(ValueError, match="negative length"):
        decode_envelopes(body, 1, "t", 0, 0)
    good = b"\x02\x00" + b"\x00" + b"\x00" + b"\x00"  # the same record with an empty key
    assert decode_envelopes(good, 1, "t", 0, 0).column("key").to_pylist() == [b""]
