"""AVRO's block codecs side by side: encode and decode speed and object size, on one core.

    python bench/avro_codecs.py [--records 200000] [--rounds 5]

Two record shapes, each with a 16 B key and 3 headers: the 1 KB JSON values of
bench/formats.py (a random hex payload, so about half of it compresses away) and ~200 B JSON
order events drawn from small vocabularies (much more compressible). Envelope objects of 25,000
records written in batches of 10,000, as bench/formats.py writes them. Every round runs every
codec once, in an order rotated from round to round, and the best round per codec is reported:
on a shared machine a single timing says little.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_records, machine, write_section  # noqa: E402
from bench.formats import BATCH, OBJECT_RECORDS, REGIONS, make_records  # noqa: E402
from formats import CodecContext, Record, get_codec  # noqa: E402

CASES = [  # (codec, compression.level; None = the codec has no level)
    ("null", None),
    ("snappy", None),
    ("zstd", 1),
    ("zstd", 3),
    ("deflate", 1),
    ("deflate", 6),
]
STATUSES = ["created", "paid", "packed", "shipped", "delivered", "cancelled"]
CHANNELS = ["web", "app", "store", "partner"]
CURRENCIES = ["EUR", "USD", "GBP", "JPY"]


def order_value(index: int, rng: random.Random) -> bytes:
    """An order event of about 200 B: repeated field names, small vocabularies, a few numbers."""
    items = [
        {
            "sku": f"SKU-{rng.randrange(5000):05d}",
            "qty": rng.randint(1, 5),
            "price": rng.randrange(100, 20000) / 100,
        }
        for _ in range(rng.randint(1, 2))
    ]
    document = {
        "id": index,
        "ts": f"2026-11-27T{index // 3_600_000 % 24:02d}:{index // 60_000 % 60:02d}:"
        f"{index // 1000 % 60:02d}.{index % 1000:03d}Z",
        "region": rng.choice(REGIONS),
        "status": rng.choice(STATUSES),
        "customer": f"c-{rng.randrange(100_000):06d}",
        "items": items,
        "currency": rng.choice(CURRENCIES),
        "channel": rng.choice(CHANNELS),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def make_order_records(count: int) -> tuple[list[Record], int]:
    return bench_records(count, random.Random(200), order_value)


def encode(records: list[Record], compression: str, level: int | None) -> list[bytes]:
    codec = get_codec("AVRO")
    context = CodecContext(
        topic="bench", partition=0, envelope=True, compression=compression, compression_level=level
    )
    objects = []
    for start in range(0, len(records), OBJECT_RECORDS):
        writer = codec.writer(context)
        chunk = records[start : start + OBJECT_RECORDS]
        for batch_start in range(0, len(chunk), BATCH):
            writer.write(chunk[batch_start : batch_start + BATCH])
        objects.append(writer.finish())
    return objects


def decode(objects: list[bytes]) -> list[Record]:
    codec = get_codec("AVRO")
    context = CodecContext(topic="bench", partition=0)
    return [record for data in objects for record in codec.reader(data, context)]


def measure(records: list[Record], compression: str, level: int | None) -> tuple[float, float, int, bool]:
    """(encode seconds, decode seconds, encoded bytes, decoded records equal the input)."""
    started = time.perf_counter()
    objects = encode(records, compression, level)
    encode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    decoded = decode(objects)
    decode_seconds = time.perf_counter() - started
    return encode_seconds, decode_seconds, sum(map(len, objects)), decoded == records


def run_shape(label: str, records: list[Record], rounds: int) -> tuple[list[str], float]:
    """The table rows of one shape and the largest drop of a codec's slowest round below its best."""
    count = len(records)
    encode_rates: dict[int, list[float]] = {i: [] for i in range(len(CASES))}
    decode_rates: dict[int, list[float]] = {i: [] for i in range(len(CASES))}
    sizes: dict[int, int] = {}
    for round_number in range(rounds):
        order = [(round_number + i) % len(CASES) for i in range(len(CASES))]
        for case in order:
            compression, level = CASES[case]
            encode_s, decode_s, size, equal = measure(records, compression, level)
            if not equal:
                raise RuntimeError(f"{label} {compression} {level}: the records did not round-trip")
            if sizes.setdefault(case, size) != size:
                raise RuntimeError(f"{label} {compression} {level}: size changed from round to round")
            encode_rates[case].append(count / encode_s)
            decode_rates[case].append(count / decode_s)
            print(
                f"{label} round {round_number + 1}/{rounds} {compression}/{level}: "
                f"encode {count / encode_s:,.0f}/s decode {count / decode_s:,.0f}/s {size:,} B",
                flush=True,
            )
    null_size = sizes[CASES.index(("null", None))]
    rows = []
    for case, (compression, level) in enumerate(CASES):
        rows.append(
            f"| {label} | {compression} | {'–' if level is None else level} | "
            f"{max(encode_rates[case]):,.0f} | {statistics.median(encode_rates[case]):,.0f} | "
            f"{max(decode_rates[case]):,.0f} | {statistics.median(decode_rates[case]):,.0f} | "
            f"{sizes[case] / null_size:.2f} | {sizes[case] / count:,.0f} |"
        )
    print("\n".join(rows), flush=True)
    spread = max(1 - min(rates) / max(rates) for rates in [*encode_rates.values(), *decode_rates.values()])
    return rows, spread


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000, help="records per shape")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-readme", action="store_true", help="print only")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = []
    shapes = [
        ("1 KB hex JSON", lambda: make_records(args.records, 1024)),
        ("~200 B order JSON", lambda: make_order_records(args.records)),
    ]
    record_sizes = []
    spread = 0.0
    for label, build in shapes:
        records, data_bytes = build()
        record_sizes.append(f"{label}, {data_bytes / len(records):,.0f} B")
        shape_rows, shape_spread = run_shape(label, records, args.rounds)
        rows += shape_rows
        spread = max(spread, shape_spread)
        del records
    load_after = os.getloadavg()[0]
    body = "\n".join(
        [
            f"`python bench/avro_codecs.py --records {args.records} --rounds {args.rounds}` on {machine()}; "
            "one process, one core; AVRO envelope objects of 25,000 records written in batches of 10,000.",
            f"{args.records:,} records per shape, each with a 16 B key and 3 headers; per record in all: "
            f"{'; '.join(record_sizes)}. The 1 KB values are those of bench/formats.py (a random hex "
            "payload); the order events repeat field names and draw from small vocabularies.",
            "",
            f"The codecs run interleaved, in an order rotated every round, for {args.rounds} rounds; "
            "*best* is a codec's fastest round, *median* its middle one. The 1-minute load average was "
            f"{load_before:.1f} just before the run and {load_after:.1f} at its end (this run's own core "
            "included); a codec's slowest round was up "
            f"to {spread:.0%} below its best, so compare codecs on the best columns. Size vs null: the "
            "objects' bytes divided by those written without compression. The default chosen from this "
            "table is explained under Reading the figures.",
            "",
            "| shape | codec | level | encode rec/s best | encode median | decode rec/s best | "
            "decode median | size vs null | bytes/record |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
        ]
    )
    if not args.no_readme:
        write_section("AVRO codecs", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
