"""The fidelity matrix: what a backup and restore keep of each kind of record, observed on real
topics and rendered as the table in docs/fidelity.md (tests/integration/test_fidelity_matrix.py).

A `Case` makes a source topic holding one kind of record and says what a restore does with it:
kept exactly, kept with a stated change, or refused before anything is written. The test backs the
case topics up in each lossless format, restores them into new topics, compares record by record
(`differences`) and checks that what it observed is what the case states; the table is rendered
from the cases and the observations, so the documentation cannot drift from the behaviour.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from tests.support.java_producer import produce_timestamps
from tests.support.kafka import consume_all, produce

Outcome = Literal["exact", "changed", "refused"]
FORMATS = ("AVRO", "PARQUET", "JSON")
NOW_MS = 1_790_000_000_000
FAR_FUTURE_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
DAY_MS = 86_400_000

Make = Callable[[dict[str, Any], str], None]  # (kafka config, topic) -> the topic filled


@dataclass(frozen=True)
class Case:
    name: str
    holds: str  # what the source topic holds, as the table says it
    make: Make
    expected: Outcome = "exact"
    note: str = ""  # the stated change, or why it is refused
    partitions: int = 1
    config: dict[str, str] = field(default_factory=dict)
    restore_properties: str = ""  # extra restore PROPERTIES, e.g. "'x'='y'"


@dataclass(frozen=True)
class Observation:
    case: str
    fmt: str
    outcome: Outcome
    records: int
    detail: str  # the fields that differ, or the refusal's message
    fields: tuple[str, ...] = ()  # the names of the fields that differ


# --- what a case's topic holds -------------------------------------------------------------------


def _messages(messages: Sequence[dict[str, Any]]) -> Make:
    def make(config: dict[str, Any], topic: str) -> None:
        produce(config, topic, messages)

    return make


def _random(count: int, partitions: int, seed: int) -> Make:
    rng = random.Random(seed)

    def one(i: int) -> dict[str, Any]:
        return {
            "partition": i % partitions,
            "key": rng.choice([None, b"", rng.randbytes(rng.randint(1, 24))]),
            "value": rng.choice([None, b"", rng.randbytes(rng.randint(1, 600))]),
            "headers": [
                (rng.choice(["a", "b", "", "trace-id", "é"]), rng.choice([None, b"", rng.randbytes(8)]))
                for _ in range(rng.randint(0, 4))
            ],
            "timestamp": NOW_MS - rng.randint(0, 400 * DAY_MS),
        }

    return _messages([one(i) for i in range(count)])


def _zero_timestamps(config: dict[str, Any], topic: str) -> None:
    """Records stamped 0 (1970-01-01T00:00:00Z) between others, by the Java client: librdkafka
    cannot write 0 (it reads it as "now")."""
    produce_timestamps(config["bootstrap.servers"], topic, [(0, NOW_MS), (0, 0), (0, 1), (0, 0)])


def _transactions(config: dict[str, Any], topic: str) -> None:
    """Committed and aborted transactions, interleaved with plain records: the topic holds
    transaction markers (control records) and aborted records a read_committed reader skips."""
    producer = Producer({**config, "transactional.id": f"fidelity-{topic}", "linger.ms": 5, "log_level": 3})
    plain = Producer({**config, "linger.ms": 5, "log_level": 3})
    producer.init_transactions(30)
    for round_ in range(4):
        producer.begin_transaction()
        for i in range(5):
            producer.produce(topic, f"txn{round_}-{i}".encode(), f"k{round_}".encode(), timestamp=NOW_MS + i)
        if round_ % 2:
            producer.abort_transaction(30)
        else:
            producer.commit_transaction(30)
        plain.produce(topic, f"plain{round_}".encode(), None, timestamp=NOW_MS + 100 + round_)
        if plain.flush(30):
            raise RuntimeError(f"plain records to {topic} not delivered")
    producer.flush(30)


def _compacted(config: dict[str, Any], topic: str) -> None:
    """A compacted topic whose older segments the log cleaner has compacted: offsets with gaps,
    the latest record of each key kept, tombstones among them. Once the gaps are there the cleaner
    is turned off (cleanup.policy=delete, nothing expires), so the topic stays as it was observed."""
    produce(
        config,
        topic,
        [
            {
                "key": f"k{i % 10}".encode(),
                "value": None if i == 41 else f"v{i}".encode(),
                "timestamp": NOW_MS + i,
            }
            for i in range(50)
        ],
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        time.sleep(1)  # past segment.ms: the next record rolls the segment, the cleaner compacts it
        produce(config, topic, [{"key": b"roll", "value": b"r", "timestamp": NOW_MS + 1000}])
        offsets = [m.offset() for m in consume_all(config, topic, 1)]
        if len(offsets) < offsets[-1] + 1:
            admin = AdminClient(config)
            delete = ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)
            change = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[delete])
            admin.incremental_alter_configs([change])[change].result(30)
            return
    raise AssertionError(f"the log cleaner did not compact {topic} within 90 s")


CASES: tuple[Case, ...] = (
    Case(
        "null and empty",
        "null and empty keys and values, tombstones",
        _messages(
            [
                {"key": None, "value": b"v"},
                {"key": b"", "value": b"v"},
                {"key": b"k", "value": None},
                {"key": b"k", "value": b""},
                {"key": None, "value": None},
                {"key": b"", "value": b""},
            ]
        ),
    ),
    Case(
        "headers",
        "duplicate header names in order, null and empty header values, empty and non-ASCII names",
        _messages(
            [
                {"key": b"dup", "value": b"v", "headers": [("h", b"1"), ("h", b"2"), ("h", b"1")]},
                {"key": b"null", "value": b"v", "headers": [("n", None), ("e", b""), ("n", b"x")]},
                {
                    "key": b"names",
                    "value": b"v",
                    "headers": [("", b"empty name"), ("заголовок", "ü".encode())],
                },
                {"key": b"emoji", "value": b"v", "headers": [("🙂", b"\x00\xff")]},
                {"key": b"none", "value": b"v", "headers": []},
            ]
        ),
    ),
    Case(
        "binary and large",
        "every byte value in keys, values and headers; a 900 KB value",
        _messages(
            [
                {
                    "key": bytes(range(256)),
                    "value": bytes(range(255, -1, -1)),
                    "headers": [("b", bytes(range(256)))],
                },
                {"key": b"\x00", "value": random.Random(3).randbytes(900 * 1024)},
            ]
        ),
    ),
    Case(
        "timestamps",
        "timestamps -5, -1, 1 ms, 2000-01-01, now, 9999-12-31 and a 40-day span, out of order",
        _messages(
            [
                {"key": b"1ms", "value": b"v", "timestamp": 1},
                {"key": b"-1", "value": b"v", "timestamp": -1},
                {"key": b"-5", "value": b"v", "timestamp": -5},
                {"key": b"2000", "value": b"v", "timestamp": 946_684_800_000},
                {"key": b"now", "value": b"v", "timestamp": NOW_MS},
                {"key": b"9999", "value": b"v", "timestamp": FAR_FUTURE_MS},
                *({"key": b"span", "value": b"v", "timestamp": NOW_MS - d * DAY_MS} for d in range(0, 41, 4)),
            ]
        ),
        config={"message.timestamp.after.max.ms": str(2**63 - 1)},
    ),
    Case(
        "timestamp zero",
        "timestamp 0 (1970-01-01T00:00:00Z) among others, written by the Java client",
        _zero_timestamps,
        expected="refused",
        note="the client library cannot write 0 (librdkafka reads it as now): the pre-flight names the "
        "partition, offset and object and stops before the target is created; the next row is the choice",
    ),
    Case(
        "timestamp zero substituted",
        "the same, restored with 'restore.timestamp.zero'='substitute'",
        _zero_timestamps,
        expected="changed",
        note="timestamp 0 is written as 1 ms; the read-back check expects the substitute and the report "
        "counts the records written with it",
        restore_properties="'restore.timestamp.zero'='substitute'",
    ),
    Case(
        "log append time",
        "a topic with message.timestamp.type=LogAppendTime (the broker's timestamps)",
        _messages([{"key": f"k{i}".encode(), "value": b"v", "timestamp": 5} for i in range(6)]),
        expected="changed",
        note="timestamp type LogAppendTime becomes CreateTime with the original values (a producer "
        "cannot write LogAppendTime; the restore warns)",
        config={"message.timestamp.type": "LogAppendTime"},
    ),
    Case(
        "transactions",
        "committed and aborted transactions between plain records (control records, aborted records)",
        _transactions,
        note="what a read_committed reader sees: aborted records and transaction markers are not backed "
        "up; the restore's own transactions write new markers, so offsets are renumbered",
    ),
    Case(
        "compacted",
        "a compacted topic after the log cleaner ran: offset gaps, tombstones",
        _compacted,
        note="the records compaction kept, tombstones included; offsets are renumbered without the gaps",
        config={
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": "3600000",
        },
    ),
    Case(
        "random",
        "2,000 seeded random records over 3 partitions (keys, values, headers, timestamps over 400 days)",
        _random(2000, 3, seed=11),
        partitions=3,
    ),
)


# --- comparing what was restored with the source --------------------------------------------------

FIELDS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("key", lambda m: m.key()),
    ("value", lambda m: m.value()),
    ("headers", lambda m: tuple(m.headers() or ())),
    ("timestamp", lambda m: m.timestamp()[1]),
    ("timestamp type", lambda m: m.timestamp()[0]),
)


def differences(source: Sequence[Any], restored: Sequence[Any]) -> list[str]:
    """What differs between two topics' records, partition by partition in offset order: the
    count, else each field that differs in some record (with the first such record)."""

    def by_partition(messages: Sequence[Any]) -> dict[int, list[Any]]:
        parts: dict[int, list[Any]] = {}
        for message in sorted(messages, key=lambda m: (m.partition(), m.offset())):
            parts.setdefault(message.partition(), []).append(message)
        return parts

    ours, theirs = by_partition(source), by_partition(restored)
    if {p: len(m) for p, m in ours.items()} != {p: len(m) for p, m in theirs.items()}:
        return [
            f"records per partition { ({p: len(m) for p, m in ours.items()}) } restored as "
            f"{ ({p: len(m) for p, m in theirs.items()}) }"
        ]
    found: dict[str, str] = {}
    for partition, messages in ours.items():
        for index, (a, b) in enumerate(zip(messages, theirs[partition], strict=True)):
            for name, read in FIELDS:
                if name not in found and read(a) != read(b):
                    found[name] = (
                        f"{name} (partition {partition}, record {index}: {read(a)!r:.60} → {read(b)!r:.60})"
                    )
    return list(found.values())


def outcome_of(diffs: Sequence[str]) -> Outcome:
    return "changed" if diffs else "exact"


# --- the table ------------------------------------------------------------------------------------

BEGIN = "<!-- fidelity matrix: generated by tests/integration/test_fidelity_matrix.py -->"
END = "<!-- end of the generated fidelity matrix -->"
_WORDS = {"exact": "kept exactly", "changed": "kept, changed", "refused": "refused"}


def render(cases: Sequence[Case], observations: Sequence[Observation]) -> str:
    cell = {(o.case, o.fmt): o for o in observations}
    lines = [
        BEGIN,
        "",
        "| records | " + " | ".join(f"{f} envelope" for f in FORMATS) + " | what happens |",
        "|---|" + "---|" * len(FORMATS) + "---|",
    ]
    for case in cases:
        outcomes = [_cell(cell[(case.name, fmt)]) for fmt in FORMATS]
        lines.append(
            f"| {case.holds} | " + " | ".join(outcomes) + f" | {case.note or 'every field byte for byte'} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def _cell(observation: Observation) -> str:
    words = _WORDS[observation.outcome]
    return f"{words}: {', '.join(observation.fields)}" if observation.fields else words


def replace_section(text: str, section: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + section + text[end:]
