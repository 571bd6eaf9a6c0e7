"""What a backup of many small partitions costs (issue 23): 600 partitions × 50 records of 1 KB.

    python bench/partitions_backup_probe.py [--partitions 600] [--records 50] [--runs 3]
        [--code DIR [--code DIR2]] [--concurrency N] [--verify sampled] [--profile FILE]

Each backup is `python -m kbackup.cli backup` of the source tree `--code` (default: this one; give
another worktree, e.g. `git worktree add /tmp/before <commit>`, to time other code on the same
topic; with several, their runs alternate) in its own process, with the user's defaults unless
told, into a new prefix of one scratch bucket, with a temporary Prefect API in a PREFECT_HOME of
the tree's own (one unmeasured run first creates its database). The topic is
created and filled once and kept (`bench-partitions-<partitions>x<records>-<size>`). Every run is
checked: its manifest must hold every record. Reported per run: the wall time of the process and
the time from the snapshot to the manifest (the manifest's started_at and finished_at: the export;
the verification comes after it). `--profile FILE` runs the last tree's last backup under
`py-spy record` (--subprocesses, speedscope format, or raw folded stacks when FILE ends in .txt),
left out of its median.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import kafka_config, machine, measured_backup, scratch_bucket  # noqa: E402

HERE = Path(__file__).resolve().parent.parent


def ensure_topic(name: str, partitions: int, per_partition: int, value_size: int) -> None:
    """Create the topic and fill every partition with `per_partition` records, unless it holds
    them already."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    config = kafka_config()
    admin = AdminClient(config)
    if name not in admin.list_topics(timeout=10).topics:
        admin.create_topics([NewTopic(name, partitions, 1, config={"retention.ms": "-1"})])[name].result(60)
    consumer = Consumer({**config, "group.id": "bench-probe"})
    try:
        for _ in range(60):
            try:
                highs = [
                    consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1]
                    for p in range(partitions)
                ]
                break
            except Exception:  # noqa: BLE001 - a new topic's partitions need a moment for leaders
                time.sleep(1)
        else:
            raise RuntimeError(f"{name}: partitions without a leader after 60 s")
    finally:
        consumer.close()
    if all(h >= per_partition for h in highs):
        return
    producer = Producer({**config, "linger.ms": 20, "enable.idempotence": True})
    rng = random.Random(value_size)
    for partition, have in enumerate(highs):
        for i in range(have, per_partition):
            value = rng.randbytes(value_size // 2 + 1).hex().encode()[:value_size]
            while True:
                try:
                    producer.produce(
                        name, key=f"key-{partition}-{i:06d}".encode(), value=value, partition=partition
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError(f"{name}: records not delivered")


def environment(code: Path, prefect_home: Path) -> dict[str, str]:
    """A user's shell: no Prefect settings but a PREFECT_HOME of the probe's own; the code under
    test first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "PYTHONPATH"}
    env["PREFECT_HOME"] = str(prefect_home)
    env["PYTHONPATH"] = str(code)
    return env


def one_backup(
    s3: Any,
    command: list[str],
    bucket: str,
    topic: str,
    records: int,
    options: list[str],
    env: dict[str, str],
) -> tuple[float, float]:
    prefix = f"run-{uuid.uuid4().hex[:8]}"
    wall, _, manifest = measured_backup(
        s3, command, bucket, prefix, topic, "PARQUET", records, options, env=env
    )
    return wall, (manifest.finished_at - manifest.started_at).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partitions", type=int, default=600)
    parser.add_argument("--records", type=int, default=50, help="records per partition")
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3, help="measured backups per source tree")
    parser.add_argument(
        "--code",
        type=Path,
        action="append",
        help="a source tree whose kbackup runs (default: this one); given twice or more, the trees' "
        "runs alternate, so that a busy machine weighs on each alike",
    )
    parser.add_argument("--concurrency", type=int, help="--concurrency (default: kbackup's own)")
    parser.add_argument("--task-runner", help="--task-runner (default: kbackup's own)")
    parser.add_argument("--verify", help="--verify (default: kbackup's own)")
    parser.add_argument("--profile", type=Path, help="run the last backup under py-spy into this file")
    args = parser.parse_args()
    from tasks.services.object_store import s3_client

    trees = [code.resolve() for code in args.code or [HERE]]
    topic = f"bench-partitions-{args.partitions}x{args.records}-{args.value_size}"
    ensure_topic(topic, args.partitions, args.records, args.value_size)
    total = args.partitions * args.records
    options = []
    for flag, value in (
        ("--concurrency", args.concurrency),
        ("--task-runner", args.task_runner),
        ("--verify", args.verify),
    ):
        if value is not None:
            options += [flag, str(value)]
    s3 = s3_client()
    command = [sys.executable, "-m", "kbackup.cli"]
    runs: dict[Path, list[tuple[float, float]]] = {code: [] for code in trees}
    with (
        scratch_bucket(s3, "bench-parts") as bucket,
        tempfile.TemporaryDirectory(prefix="bench-parts-") as work,
    ):
        s3.put_object(Bucket=bucket, Key="bench-first-write", Body=b"")
        os.chdir(work)  # the children's `python -m` puts their working directory first on the path
        envs = {}
        for number, code in enumerate(trees):
            home = Path(work, f"prefect-{number}")
            home.mkdir()
            envs[code] = environment(code, home)
            where = subprocess.run(
                [sys.executable, "-c", "import flows; print(flows.__file__)"],
                env=envs[code],
                capture_output=True,
                text=True,
            )
            print(f"kbackup from {where.stdout.strip()}", flush=True)
            one_backup(s3, command, bucket, topic, total, options, envs[code])  # the API's database
        for run in range(args.runs):
            for code in trees:
                spy: list[str] = []
                if args.profile and run == args.runs - 1 and code == trees[-1]:
                    fmt = "raw" if args.profile.suffix == ".txt" else "speedscope"
                    spy = [shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))]
                    spy += ["record", "--subprocesses", "--rate", "200", "--format", fmt]
                    spy += ["-o", str(args.profile), "--"]
                load = os.getloadavg()[0]
                runs[code].append(one_backup(s3, [*spy, *command], bucket, topic, total, options, envs[code]))
                wall, export = runs[code][-1]
                print(
                    f"{code} run {run + 1}: wall {wall:.2f} s, snapshot to manifest {export:.2f} s "
                    f"(load average {load:.1f} before){' under py-spy' if spy else ''}",
                    flush=True,
                )
    for code in trees:
        commit = subprocess.run(
            ["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        measured = runs[code][:-1] if args.profile and code == trees[-1] and args.runs > 1 else runs[code]
        print(
            f"{machine()}; code {code} ({commit.stdout.strip() or '?'}); {args.partitions} partitions × "
            f"{args.records} records of {args.value_size} B; options {' '.join(options) or '(defaults)'}; "
            f"{len(measured)} runs: wall median {statistics.median(w for w, _ in measured):.2f} s "
            f"(min {min(w for w, _ in measured):.2f}), snapshot to manifest median "
            f"{statistics.median(e for _, e in measured):.2f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
