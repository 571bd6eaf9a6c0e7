"""Topics with content that tries hard to get lost: null vs empty keys and values, binary bytes,
duplicate and null-valued headers, non-ASCII names, a 1 MB value, old and current timestamps;
plus seeded random records so that checksums cover more than hand-picked examples."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

from formats import RecordsDigest

NOW_MS = 1_790_000_000_000
OLD_MS = 946_684_800_000  # 2000-01-01


def tricky_messages(
    partitions: int = 4, random_per_partition: int = 150, seed: int = 7
) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    special: list[dict[str, Any]] = [
        {"key": None, "value": b"null key"},
        {"key": b"", "value": b"empty key"},
        {"key": b"tombstone", "value": None},
        {"key": b"empty value", "value": b""},
        {"key": None, "value": None},
        {"key": b"\xff\xfe\x00\x80", "value": bytes(range(256))},
        {"key": b"dup", "value": b"v", "headers": [("h", b"1"), ("h", b"2"), ("h", b"1")]},
        {"key": b"nullh", "value": b"v", "headers": [("n", None), ("e", b""), ("n", b"x")]},
        {
            "key": "ключ".encode(),
            "value": "значение ✓".encode(),
            "headers": [("заголовок", "ü".encode()), ("🙂", b"\x00")],
        },
        {"key": b"big", "value": rng.randbytes(1024 * 1024)},
        {"key": b"old", "value": b"from 2000", "timestamp": OLD_MS},
        {"key": b"epoch", "value": b"at 1 ms", "timestamp": 1},
        {"key": b"json", "value": json.dumps({"$base64": "not really"}).encode()},
    ]
    for index, message in enumerate(special):
        yield {"partition": index % partitions, "timestamp": NOW_MS + index, **message}
    for partition in range(partitions):
        for i in range(random_per_partition):
            headers = [
                (
                    rng.choice(["a", "b", "trace-id"]),
                    rng.choice([None, b"", rng.randbytes(rng.randint(1, 20))]),
                )
                for _ in range(rng.randint(0, 3))
            ]
            yield {
                "partition": partition,
                "key": rng.choice([None, b"", rng.randbytes(rng.randint(1, 16)), f"k{i}".encode()]),
                "value": rng.choice(
                    [None, b"", rng.randbytes(rng.randint(1, 300)), json.dumps({"i": i}).encode()]
                ),
                "headers": headers,
                "timestamp": rng.choice([NOW_MS + 10_000 + i, OLD_MS + i]),
            }


def topic_digests(messages: list[Any]) -> dict[int, str]:
    """Records digest per partition of consumed confluent-kafka messages, in offset order."""
    digests: dict[int, RecordsDigest] = {}
    for message in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        ts_type, ts = message.timestamp()
        digests.setdefault(message.partition(), RecordsDigest()).update(
            message.key(),
            message.value(),
            tuple(message.headers() or ()),
            None if ts_type == 0 else ts,
            ts_type,
        )
    return {partition: digest.hexdigest() for partition, digest in digests.items()}
