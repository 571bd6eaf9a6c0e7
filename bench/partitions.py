"""Cost per partition: kbackup and OSO kafka-backup side by side on many small partitions.

    python bench/partitions.py [--sizes 600,3000] [--topics 200] [--records 50] [--large N] [--prefect-api]

Data sets (each record 1 KB, 3 headers; made once and reused):
- one topic of N partitions × R records, for each N of --sizes;
- --topics topics × 3 partitions × R records;
- with --large N, one topic of 6 partitions × N records: the other direction of growth, where the
  cost per record dominates (the issue's "no regression at 6 × 1M").

For each data set, in the same run: the ceiling (one raw consumer reading every partition to its
end; one raw idempotent producer writing the same records to a scratch topic of the same shape),
`kbackup backup` (installed script, AVRO envelope, defaults), `kbackup restore` with its check
into a new topic (the many-topics set: into the original names, after deleting them), and OSO
kafka-backup's backup and restore of the same data to the same S3 server (its CLI built by
../shared/tools/build-oso.sh; skipped when absent). Reported: wall time, peak RSS of the process
tree, kbackup's task runs, ratios against OSO and the ceiling, and the marginal cost per
partition (the slope between the two --sizes). Writes the "Partitions" section of
bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from bench.common import kafka_config, machine, run_measured, write_section  # noqa: E402

VALUE_SIZE = 1024
OSO_DEFAULT = Path(os.environ.get("OSO_DIR", "/tmp/oso")) / "target/release/kafka-backup"


@dataclass
class DataSet:
    name: str
    topics: list[str]
    partitions_per_topic: int
    records_per_partition: int

    @property
    def partitions(self) -> int:
        return len(self.topics) * self.partitions_per_topic

    @property
    def records(self) -> int:
        return self.partitions * self.records_per_partition


@dataclass
class Row:
    data: DataSet
    figures: dict[str, float] = field(default_factory=dict)
    rss: dict[str, int] = field(default_factory=dict)
    task_runs: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


# --- data -------------------------------------------------------------------------------------


def admin() -> AdminClient:
    return AdminClient(kafka_config())


def wait_for_leaders(topics: list[str], partitions: int) -> None:
    consumer = Consumer({**kafka_config(), "group.id": "bench-partitions-probe"})
    try:
        deadline = time.monotonic() + 300
        while True:
            metadata = consumer.list_topics(timeout=30)
            ready = all(
                t in metadata.topics
                and len(metadata.topics[t].partitions) == partitions
                and all(p.leader >= 0 for p in metadata.topics[t].partitions.values())
                for t in topics
            )
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(topics)} topics: partitions without a leader after 300 s")
            time.sleep(1)
    finally:
        consumer.close()


def create_topics(topics: list[str], partitions: int) -> None:
    client = admin()
    existing = client.list_topics(timeout=30).topics
    new = [NewTopic(t, partitions, 1, config={"retention.ms": "-1"}) for t in topics if t not in existing]
    for start in range(0, len(new), 100):
        for future in client.create_topics(new[start : start + 100], request_timeout=120).values():
            future.result(180)
    wait_for_leaders(topics, partitions)


def delete_topics(topics: list[str]) -> None:
    client = admin()
    existing = client.list_topics(timeout=30).topics
    doomed = [t for t in topics if t in existing]
    for start in range(0, len(doomed), 100):
        for future in client.delete_topics(doomed[start : start + 100], request_timeout=120).values():
            future.result(180)
    deadline = time.monotonic() + 120
    while any(t in admin().list_topics(timeout=30).topics for t in doomed) and time.monotonic() < deadline:
        time.sleep(1)


def record_counts(topics: list[str], partitions: int) -> int:
    """The topics' records (their high watermarks), asked in one batched ListOffsets; asked again
    for a while when a partition's leader is not settled yet (NOT_LEADER_FOR_PARTITION)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import OffsetSpec

    wanted = {TopicPartition(t, p): OffsetSpec.latest() for t in topics for p in range(partitions)}
    client = admin()  # held while its futures are waited for
    deadline = time.monotonic() + 120
    while True:
        try:
            futures = client.list_offsets(wanted, request_timeout=60)
            return sum(future.result(90).offset for future in futures.values())
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def ready(topics: list[str], partitions: int) -> None:
    """The target topics created empty and answering ListOffsets on every partition: a topic of
    thousands of partitions created a moment ago answers NOT_LEADER_FOR_PARTITION for a while on
    this broker (OSO's restore gave up on it; kbackup's does not ask a topic it created). Both
    tools restore into topics made ready so, so that neither pays for the creation."""
    create_topics(topics, partitions)
    record_counts(topics, partitions)


def restored_count(topics: list[str], partitions: int) -> int:
    """The records the topics hold, consumed under read_committed: a transactional restore's
    commit markers take offsets too, so the high watermarks count more than the records."""
    consumer = Consumer(
        {
            **kafka_config(),
            "group.id": f"bench-count-{uuid.uuid4().hex[:6]}",
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    try:
        consumer.assign([TopicPartition(t, p, 0) for t in topics for p in range(partitions)])
        done: set[tuple[str, int]] = set()
        count = 0
        deadline = time.monotonic() + 600
        while len(done) < len(topics) * partitions and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=0.1):
                if message.error():
                    done.add((message.topic(), message.partition()))
                else:
                    count += 1
        return count
    finally:
        consumer.close()


def fill(topics: list[str], partitions: int, per_partition: int, seed: int = 7) -> float:
    """Produce `per_partition` 1 KB records into every partition; returns the wall seconds (the
    produce ceiling: an idempotent producer, acks=all)."""
    import random

    rng = random.Random(seed)
    values = [rng.randbytes(VALUE_SIZE // 2).hex().encode() for _ in range(64)]
    producer = Producer(
        {
            **kafka_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.kbytes": 512 * 1024,
        }
    )
    started = time.perf_counter()
    now = int(time.time() * 1000)
    i = 0
    for topic in topics:
        for partition in range(partitions):
            for n in range(per_partition):
                headers = [("h0", b"a"), ("h1", str(n).encode()), ("h2", b"c")]
                while True:
                    try:
                        producer.produce(
                            topic,
                            values[i % 64],
                            f"key-{i:012d}".encode(),
                            partition=partition,
                            headers=headers,
                            timestamp=now - per_partition + n,
                        )
                        break
                    except BufferError:
                        producer.poll(0.05)
                i += 1
            producer.poll(0)
    remaining = producer.flush(300)
    if remaining:
        raise RuntimeError(f"{remaining} records not delivered")
    return time.perf_counter() - started


def ensure(data: DataSet) -> None:
    create_topics(data.topics, data.partitions_per_topic)
    have = record_counts(data.topics, data.partitions_per_topic)
    if have == data.records:
        return
    if have:
        delete_topics(data.topics)
        create_topics(data.topics, data.partitions_per_topic)
    fill(data.topics, data.partitions_per_topic, data.records_per_partition)


def raw_consume(data: DataSet) -> float:
    consumer = Consumer(
        {
            **kafka_config(),
            "group.id": f"bench-raw-{uuid.uuid4().hex[:6]}",
            "enable.partition.eof": True,
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    started = time.perf_counter()
    consumer.assign([TopicPartition(t, p, 0) for t in data.topics for p in range(data.partitions_per_topic)])
    done: set[tuple[str, int]] = set()
    count = 0
    while len(done) < data.partitions:
        for message in consumer.consume(10_000, timeout=0.05):
            if message.error():
                done.add((message.topic(), message.partition()))
            else:
                count += 1
    wall = time.perf_counter() - started
    consumer.close()
    if count != data.records:
        raise RuntimeError(f"raw consume of {data.name}: {count} of {data.records} records")
    return wall


def raw_produce(data: DataSet) -> float:
    scratch = [f"{t}-ceiling" for t in data.topics]
    delete_topics(scratch)
    create_topics(scratch, data.partitions_per_topic)
    try:
        return fill(scratch, data.partitions_per_topic, data.records_per_partition)
    finally:
        delete_topics(scratch)


# --- the two tools ----------------------------------------------------------------------------


def kbackup() -> list[str]:
    return [str(Path(sys.executable).with_name("kbackup"))]


def task_runs(output: str) -> int:
    """The work units' and checks' task runs, from the run's log: each `N tasks on <runner>` line."""
    return sum(int(n) for n in re.findall(r"\b(\d+) tasks on ", output))


def kbackup_backup(row: Row, bucket: str, selector: str) -> None:
    kcql = (
        f"INSERT INTO {bucket}:kb SELECT * FROM `{selector}` STOREAS AVRO PROPERTIES('store.envelope'=true)"
    )
    wall, rss, out = run_measured([*kbackup(), "backup", "--kcql", kcql], env=_child_env(), with_stderr=True)
    row.figures["kbackup backup"], row.rss["kbackup backup"] = wall, rss
    row.task_runs["kbackup backup"] = task_runs(out)


def kbackup_restore(row: Row, bucket: str) -> None:
    data = row.data
    if len(data.topics) == 1:
        target = f"{data.topics[0]}-restored-kb"
        delete_topics([target])
        kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:kb"
        targets = [target]
    else:
        delete_topics(data.topics)
        kcql = f"INSERT INTO * SELECT * FROM {bucket}:kb"
        targets = data.topics
    ready(targets, data.partitions_per_topic)
    wall, rss, out = run_measured([*kbackup(), "restore", "--kcql", kcql], env=_child_env(), with_stderr=True)
    restored = restored_count(targets, data.partitions_per_topic)
    if restored != data.records:
        raise RuntimeError(f"kbackup restore of {data.name}: {restored} of {data.records} records")
    row.figures["kbackup restore (checked)"], row.rss["kbackup restore (checked)"] = wall, rss
    row.task_runs["kbackup restore (checked)"] = task_runs(out)
    if len(data.topics) == 1:
        delete_topics(targets)


def oso_config(mode: str, data: DataSet, bucket: str, backup_id: str, workdir: Path) -> Path:
    env = os.environ
    endpoint = env.get("KBACKUP_S3_ENDPOINT_URL", "http://127.0.0.1:18333")
    lines = [
        f"mode: {mode}",
        f'backup_id: "{backup_id}"',
        "source:" if mode == "backup" else "target:",
        f'  bootstrap_servers: ["{env.get("KBACKUP_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")}"]',
        "  topics:",
        "    include: [" + ", ".join(f'"{t}"' for t in data.topics) + "]",
        "storage:",
        "  backend: s3",
        f"  bucket: {bucket}",
        "  region: us-east-1",
        f"  endpoint: {endpoint}",
        f"  access_key: {env.get('AWS_ACCESS_KEY_ID', 'kbackup')}",
        f"  secret_key: {env.get('AWS_SECRET_ACCESS_KEY', 'kbackup-secret')}",
        "  path_style: true",
        "  allow_http: true",
    ]
    if mode == "backup":
        lines += [
            "backup:",
            "  compression: zstd",
            "  start_offset: earliest",
            "  continuous: false",
            "  stop_at_current_offsets: true",
            "offset_storage:",
            f"  db_path: {workdir / 'oso-offsets.db'}",
        ]
    else:
        lines += ["restore:", "  topic_mapping:"]
        lines += [f"    {t}: {oso_target(data, t)}" for t in data.topics]
        lines += ["  create_topics: true", "  include_original_offset_header: false"]
        lines += ["  consumer_group_strategy: skip"]
    path = workdir / f"oso-{mode}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def oso_target(data: DataSet, topic: str) -> str:
    return f"{topic}-restored-oso" if len(data.topics) == 1 else topic


def oso_run(row: Row, oso: Path, bucket: str) -> None:
    data = row.data
    backup_id = f"oso-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        config = oso_config("backup", data, bucket, backup_id, workdir)
        wall, rss, _ = run_measured([str(oso), "backup", "--config", str(config)])
        row.figures["OSO backup"], row.rss["OSO backup"] = wall, rss
        targets = [oso_target(data, t) for t in data.topics]
        delete_topics(targets)
        ready(targets, data.partitions_per_topic)
        config = oso_config("restore", data, bucket, backup_id, workdir)
        wall, rss, _ = run_measured([str(oso), "restore", "--config", str(config)])
        restored = restored_count(targets, data.partitions_per_topic)
        if restored != data.records:
            print(f"  OSO restore of {data.name} FAILED: {restored} of {data.records} records", flush=True)
            row.failed.append("OSO restore")
        else:
            row.figures["OSO restore"], row.rss["OSO restore"] = wall, rss
        if len(data.topics) == 1:
            delete_topics(targets)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def make_bucket() -> str:
    from tasks.services.object_store import open_store

    bucket = f"bench-parts-{uuid.uuid4().hex[:8]}"
    open_store().create_bucket(bucket)
    return bucket


def drop(bucket: str) -> None:
    from bench.common import drop_bucket
    from tasks.services.object_store import open_store

    drop_bucket(open_store(), bucket)


# --- the run ----------------------------------------------------------------------------------


def measure(data: DataSet, oso: Path | None) -> Row:
    print(f"{data.name}: preparing {data.partitions} partitions, {data.records} records", flush=True)
    ensure(data)
    row = Row(data)
    row.figures["ceiling: raw consume"] = raw_consume(data)
    row.figures["ceiling: raw produce"] = raw_produce(data)
    selector = data.topics[0] if len(data.topics) == 1 else data.topics[0].rsplit("-", 1)[0] + "-*"
    bucket = make_bucket()
    try:
        kbackup_backup(row, bucket, selector)
        print(f"  kbackup backup {row.figures['kbackup backup']:.1f} s", flush=True)
        if oso:
            oso_run(row, oso, bucket)  # before kbackup's restore, which deletes the topics of many
            print(
                f"  OSO backup {row.figures['OSO backup']:.1f} s, restore {row.figures['OSO restore']:.1f} s"
            )
        kbackup_restore(row, bucket)
        print(f"  kbackup restore {row.figures['kbackup restore (checked)']:.1f} s", flush=True)
    finally:
        drop(bucket)
    return row


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}×" if a and b else "—"


def render(rows: list[Row], sizes: list[int], oso: Path | None) -> str:
    lines = [
        f"Machine: {machine()}; one local Kafka broker (KRaft), SeaweedFS; 1 KB records, 3 headers; "
        "kbackup: the installed script with its defaults (AVRO envelope, verification sampled, the "
        "restore's check on); OSO kafka-backup: "
        + (f"`{oso}` (built by ../shared/tools/build-oso.sh), zstd." if oso else "not built: not measured."),
        "",
        "| data set | partitions | records | run | wall s | per partition ms | peak RSS MB | task runs | × OSO | × ceiling |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        f = row.figures
        for run in ("kbackup backup", "OSO backup", "kbackup restore (checked)", "OSO restore"):
            if run not in f:
                continue
            peer = f.get("OSO backup" if "backup" in run else "OSO restore")
            ceiling = f["ceiling: raw consume"] if "backup" in run else f["ceiling: raw produce"]
            lines.append(
                f"| {row.data.name} | {row.data.partitions} | {row.data.records} | {run} | {f[run]:.1f} | "
                f"{f[run] / row.data.partitions * 1000:.1f} | {row.rss.get(run, 0) / 2**20:.0f} | "
                f"{row.task_runs.get(run, '—')} | {ratio(f[run], peer) if run.startswith('kbackup') else '1.0×'} "
                f"| {ratio(f[run], ceiling)} |"
            )
        lines.append(
            f"| {row.data.name} | {row.data.partitions} | {row.data.records} | ceiling: raw consume / produce | "
            f"{f['ceiling: raw consume']:.1f} / {f['ceiling: raw produce']:.1f} | | | | | |"
        )
    for row in rows:
        for run in row.failed:
            lines.append(f"\n{run} of {row.data.name} failed (not every record restored): see the run's log.")
    singles = {r.data.partitions: r for r in rows if len(r.data.topics) == 1}
    if len(sizes) == 2 and all(s in singles for s in sizes):
        small, large = singles[sizes[0]], singles[sizes[1]]
        added = large.data.partitions - small.data.partitions
        lines += ["", f"Marginal cost per partition (slope from {sizes[0]} to {sizes[1]} partitions):", ""]
        lines += ["| run | ms per added partition |", "|---|---:|"]
        for run in ("kbackup backup", "kbackup restore (checked)", "OSO backup", "OSO restore"):
            if run in small.figures and run in large.figures:
                slope = (large.figures[run] - small.figures[run]) / added * 1000
                lines.append(f"| {run} | {slope:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="600,3000", help="partition counts of the one-topic data sets")
    parser.add_argument("--topics", type=int, default=200, help="topics of 3 partitions (0: none)")
    parser.add_argument("--records", type=int, default=50, help="records per partition")
    parser.add_argument("--oso", type=Path, default=OSO_DEFAULT, help="OSO kafka-backup's CLI")
    parser.add_argument(
        "--large", type=int, default=0, help="also one topic of 6 partitions × this many records (0: none)"
    )
    parser.add_argument(
        "--prefect-api",
        action="store_true",
        help="run kbackup against a `prefect server start` of the benchmark's (as a deployment runs), "
        "not its temporary API",
    )
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
    args = parser.parse_args()
    if args.prefect_api:
        from bench.fixed_cost import prefect_server

        with tempfile.TemporaryDirectory(prefix="bench-prefect-") as home, prefect_server(Path(home)) as url:
            os.environ["PREFECT_API_URL"] = url
            os.environ["PREFECT_HOME"] = home
            measure_all(args)
        return
    measure_all(args)


def measure_all(args: argparse.Namespace) -> None:
    oso = args.oso if args.oso.exists() else None
    if oso is None:
        print(f"OSO kafka-backup not found at {args.oso}: measuring kbackup alone", flush=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    sets = [DataSet(f"1 topic × {n}", [f"bench-parts-{n}x{args.records}"], n, args.records) for n in sizes]
    if args.topics:
        names = [f"bench-many-{args.topics}x3x{args.records}-{i:04d}" for i in range(args.topics)]
        sets.append(DataSet(f"{args.topics} topics × 3", names, 3, args.records))
    if args.large:
        sets.append(
            DataSet(f"1 topic × 6, {args.large:,} each", [f"bench-parts-6x{args.large}"], 6, args.large)
        )
    rows = [measure(data, oso) for data in sets]
    table = render(rows, sizes, oso)
    print(table)
    if not args.no_readme:
        write_section("Partitions" + (" (a configured Prefect API)" if args.prefect_api else ""), table)


if __name__ == "__main__":
    if shutil.which("java") is None:
        print("note: the stack must be up (make up) and .stack/env sourced", file=sys.stderr)
    subprocess  # noqa: B018 - imported for run_measured's children
    main()
