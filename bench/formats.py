"""Encode and decode throughput per codec, on one core, no services.

    python bench/formats.py [--records 1000000] [--no-readme]

Records: values of 100 B and of 1 KB, a 16 B key and 3 headers each, held as Arrow batches of
10,000 records (formats.columns.COLUMNS, what the export's consumer gives). Encoding goes through
the columnar path, `ObjectWriter.write_columns`, with objects rolled at 25,000 records (as a
backup would with flush.count); decoding reads those objects back through `Codec.read_columns`
(the restore's path). MB/s counts key + value + header bytes of the records, not the encoded size.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_records, machine, write_section  # noqa: E402
from formats import CodecContext, Record, get_codec  # noqa: E402
from formats.columns import from_records  # noqa: E402

BATCH = 10_000
OBJECT_RECORDS = 25_000
REGIONS = ["EMEA", "AMER", "APAC"]
CASES = [  # (format, envelope, compression; None = the format's default)
    ("PARQUET", True, None),
    ("AVRO", True, None),
    ("AVRO", True, "deflate"),
    ("JSON", True, None),
    ("PARQUET", False, None),
    ("AVRO", False, None),
    ("JSON", False, None),
    ("CSV", False, None),
    ("TEXT", False, None),
    ("BYTES", False, None),
]


def json_value(index: int, size: int, rng: random.Random) -> bytes:
    """A JSON object of exactly `size` bytes whose payload does not repeat between records."""
    head = f'{{"id":{index},"region":"{rng.choice(REGIONS)}","payload":"'.encode()
    room = size - len(head) - 2
    return head + rng.randbytes(room // 2 + 1).hex().encode()[:room] + b'"}'


def make_batches(count: int, value_size: int) -> tuple[list[pa.RecordBatch], int]:
    """The records as COLUMNS batches of BATCH records (object boundaries fall on batch ones)."""
    records, data_bytes = make_records(count, value_size)
    batches = [from_records(records[start : start + BATCH]) for start in range(0, count, BATCH)]
    return batches, data_bytes


def make_records(count: int, value_size: int) -> tuple[list[Record], int]:
    rng = random.Random(value_size)
    return bench_records(count, rng, lambda index, rng: json_value(index, value_size, rng))


def encode(name: str, envelope: bool, compression: str | None, batches: list[pa.RecordBatch]) -> list[bytes]:
    codec = get_codec(name)
    context = CodecContext(topic="bench", partition=0, envelope=envelope, compression=compression)
    objects = []
    writer = None
    for batch in batches:
        if writer is None:
            writer = codec.writer(context)
        writer.write_columns(batch)
        if writer.record_count >= OBJECT_RECORDS:
            objects.append(writer.finish())
            writer = None
    if writer is not None:
        objects.append(writer.finish())
    return objects


def decode(name: str, envelope: bool, objects: list[bytes]) -> int:
    codec = get_codec(name)
    context = CodecContext(topic="bench", partition=0, envelope=envelope)
    return sum(batch.num_rows for data in objects for batch in codec.read_columns(data, context))


def measure(
    batches: list[pa.RecordBatch], name: str, envelope: bool, compression: str | None
) -> tuple[float, float, int]:
    count = sum(batch.num_rows for batch in batches)
    started = time.perf_counter()
    objects = encode(name, envelope, compression, batches)
    encode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    decoded = decode(name, envelope, objects)
    decode_seconds = time.perf_counter() - started
    if decoded != count:
        raise RuntimeError(f"{name}: decoded {decoded} of {count} records")
    return encode_seconds, decode_seconds, sum(map(len, objects))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--no-readme", action="store_true", help="print only")
    parser.add_argument("--only", nargs="*", default=None, help="format names to measure (default: all)")
    args = parser.parse_args()
    rows = []
    for value_size in (100, 1024):
        batches, data_bytes = make_batches(args.records, value_size)
        for name, envelope, compression in CASES:
            if args.only and name not in args.only:
                continue
            encode_s, decode_s, encoded = measure(batches, name, envelope, compression)
            mode = "envelope" if envelope else "value only"
            chosen = compression or get_codec(name).spec.default_compression
            row = (
                f"| {name} | {mode} | {chosen} | {value_size} B | {args.records / encode_s:,.0f} | "
                f"{data_bytes / encode_s / 1e6:,.1f} | {args.records / decode_s:,.0f} | "
                f"{data_bytes / decode_s / 1e6:,.1f} | {encoded / data_bytes:.2f} |"
            )
            print(row, flush=True)
            rows.append(row)
        del batches
    body = "\n".join(
        [
            f"`python bench/formats.py --records {args.records}` on {machine()}; one process, one core; "
            "columnar paths (write_columns / read_columns).",
            "Records have a 16 B key and 3 headers; MB/s counts the records' own bytes; "
            "size is encoded bytes / record bytes.",
            "",
            "| format | mode | compression | value | encode rec/s | encode MB/s | decode rec/s | decode MB/s | size |",
            "|---|---|---|---|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    if not args.no_readme:
        write_section("Formats", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
