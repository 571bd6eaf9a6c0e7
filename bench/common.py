"""Shared pieces of the benchmarks: a benchmark topic, benchmark records, a scratch bucket and a
measured backup into it, the raw consume ceiling, peak RSS of a child process, and writing a
section of bench/README.md."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

if TYPE_CHECKING:
    from formats import Record
    from layout.manifest import Manifest

README = Path(__file__).with_name("README.md")
PARTITIONS = 6
VALUE_SIZE = 1024
"""The value size of the topics the service benchmarks (backup, restore, fixed cost) read."""


def kafka_config() -> dict[str, Any]:
    from tasks.services.kafka.clients import client_config

    return client_config()


def bench_topic_name(records: int, value_size: int) -> str:
    return f"bench-data-{records}-{value_size}"


def ensure_topic(name: str, records: int, value_size: int, headers: int = 3) -> int:
    """Create and fill the topic unless it already holds `records` records; returns its byte size
    (keys + values + headers)."""
    config = kafka_config()
    admin = AdminClient(config)
    if name not in admin.list_topics(timeout=10).topics:
        # No time retention: the data set is kept between runs and must not age out.
        admin.create_topics([NewTopic(name, PARTITIONS, 1, config={"retention.ms": "-1"})])[name].result(60)
    per_record = 16 + value_size + headers * (2 + 16)  # key, value, header names and values
    have = records_in(config, name)
    if have >= records:
        return records * per_record
    producer = Producer(
        {
            **config,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "enable.idempotence": True,
        }
    )
    rng = random.Random(value_size)
    first_timestamp = int(time.time() * 1000) - records
    for i in range(have, records):
        # Values differ record to record (random hex), so compression sees realistic data.
        value = rng.randbytes(value_size // 2 + 1).hex().encode()[:value_size]
        header_list = [(f"h{h}", rng.randbytes(8).hex().encode()) for h in range(headers)]
        while True:
            try:
                producer.produce(
                    name,
                    key=f"key-{i:012d}".encode(),
                    value=value,
                    headers=header_list,
                    partition=i % PARTITIONS,
                    timestamp=first_timestamp + i,
                )
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)
    return records * per_record


def bench_records(
    count: int, rng: random.Random, make_value: Callable[[int, random.Random], bytes]
) -> tuple[list[Record], int]:
    """`count` records of topic `bench`, partition 0, each with a 16 B key, the value
    `make_value(index, rng)` and 3 headers (the codec benchmarks' data); and their bytes (keys,
    values, header names and values)."""
    from formats import Record, TimestampType  # here: the service benchmarks' children start fast

    records = []
    data_bytes = 0
    for i in range(count):
        key = f"key-{i:012d}".encode()
        value = make_value(i, rng)
        headers = (("trace", rng.randbytes(8).hex().encode()), ("source", b"bench"), ("seq", str(i).encode()))
        records.append(
            Record(key, value, headers, "bench", 0, i, 1_790_000_000_000 + i, TimestampType.CREATE_TIME)
        )
        data_bytes += len(key) + len(value) + sum(len(n) + len(v) for n, v in headers)
    return records, data_bytes


def records_in(config: dict[str, Any], topic: str) -> int:
    """Sum of the high watermarks, once every partition has a leader (a new topic needs a moment)."""
    consumer = Consumer({**config, "group.id": "bench-probe"})
    try:
        for _ in range(60):
            try:
                return sum(
                    consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in range(PARTITIONS)
                )
            except KafkaException:
                time.sleep(1)
        raise RuntimeError(f"{topic}: partitions without a leader after 60 s")
    finally:
        consumer.close()


def _tree_rss(root: int) -> int:
    """Resident bytes of a process and all its descendants now (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, ()))
    return total


def run_measured(
    args: list[str], env: dict[str, str] | None = None, *, with_stderr: bool = False
) -> tuple[float, int, str]:
    """Run a child process; returns (wall seconds, peak RSS bytes of its whole process tree,
    sampled every 0.2 s, stdout — and its stderr, where the run's log goes, `with_stderr`)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT if with_stderr else None, text=True, env=env
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.2):
            peak = max(peak, _tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args} failed:\n{out}")
    return wall, max(peak, usage.ru_maxrss * 1024), out


def raw_consume(topic: str) -> int:
    """The ceiling: read every partition to its end, touching nothing. Returns the record count."""
    consumer = Consumer(
        {
            **kafka_config(),
            "group.id": "bench-raw",
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "queued.max.messages.kbytes": 256 * 1024,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    done: set[int] = set()
    count = 0
    while len(done) < PARTITIONS:
        for message in consumer.consume(10_000, timeout=0.05):
            if message.error():
                done.add(message.partition())
            else:
                count += 1
    consumer.close()
    return count


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, {datetime.now(UTC):%Y-%m-%d}"


def write_section(heading: str, body: str) -> None:
    """Replace (or append) the `## heading` section of bench/README.md."""
    text = (
        README.read_text()
        if README.exists()
        else "# Benchmarks\n\nRun with `make bench` (the stack must be up).\n"
    )
    section = f"## {heading}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    README.write_text(text)


def drop_topic(name: str) -> None:
    """Delete a topic a benchmark made (restores write 1 GB each: left behind, they fill the disk)."""
    admin = AdminClient(kafka_config())
    for future in admin.delete_topics([name]).values():
        future.result(60)


@contextlib.contextmanager
def scratch_bucket(store: Any, stem: str = "bench") -> Iterator[str]:
    """A new bucket `<stem>-<random>` for a benchmark's backups; deleted with its objects afterwards."""
    bucket = f"{stem}-{uuid.uuid4().hex[:8]}"
    store.client.create_bucket(Bucket=bucket)
    try:
        yield bucket
    finally:
        drop_bucket(store, bucket)


def measured_backup(
    store: Any,
    command: Sequence[str],
    bucket: str,
    prefix: str,
    topic: str,
    fmt: str,
    records: int,
    options: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> tuple[float, int, Manifest]:
    """`<command> backup` of `topic` into `bucket:prefix` (STOREAS `fmt`, envelope) in its own
    process: (wall seconds, peak RSS of its process tree, its manifest). Raises unless the
    manifest holds all `records` records."""
    from tasks.services.manifest_store import latest_manifest

    target = f"{bucket}:{prefix}" if prefix else bucket
    kcql = f"INSERT INTO {target} SELECT * FROM `{topic}` STOREAS {fmt} PROPERTIES('store.envelope'=true)"
    wall, rss, _ = run_measured([*command, "backup", "--kcql", kcql, *options], env=env)
    manifest = latest_manifest(store, bucket, prefix)
    if manifest is None or manifest.record_count != records:
        held = manifest.record_count if manifest else "no manifest"
        raise RuntimeError(f"backup of {topic} into {target}: {held} of {records} records")
    return wall, rss, manifest


def drop_bucket(store: Any, bucket: str) -> None:
    """Delete a bucket a benchmark made, with every object in it."""
    paginator = store.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            store.client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    store.client.delete_bucket(Bucket=bucket)
