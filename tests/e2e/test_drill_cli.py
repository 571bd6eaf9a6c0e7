"""`kbackup drill` as a user runs it, on a backup made by the installed `kbackup backup`: a good
backup's drill passes, leaves its evidence in the bucket (counts and digests as the manifest has
them) and nothing on the broker; a drill of a backup with one damaged object fails naming the
object, in its exit code, its stderr and its evidence, and leaves nothing on the broker either."""

from __future__ import annotations

import json
import signal
import subprocess
from typing import Any

import pytest

from layout.drills import DrillEvidence, drills_prefix
from tasks.services.manifest_store import read_chain
from tests.e2e.conftest import Kbackup, wait_for
from tests.support.cli import assert_clean_success
from tests.support.kafka import produce

pytestmark = pytest.mark.usefixtures("prefect_harness")

PARTITIONS = 3
RECORDS_TO_STOP = 300_000  # a restore of several seconds here: time to stop it in the middle


def backed_up(
    kafka_config: dict[str, Any], create_topic: Any, bucket: str, kbackup: Kbackup, unique_name: Any
) -> tuple[str, str]:
    """A topic of 3 partitions, a consumer group's committed offsets on it, and its backup under
    `nightly` by the installed `kbackup backup`: (topic, group)."""
    from confluent_kafka import Consumer, TopicPartition

    topic = create_topic("drill", partitions=PARTITIONS)
    produce(
        kafka_config,
        topic,
        (
            {"key": f"k{i:04d}".encode(), "value": f"value {i}".encode() * 5, "partition": i % PARTITIONS}
            for i in range(300)
        ),
    )
    group = unique_name("grp")
    consumer = Consumer({**kafka_config, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, p, 40) for p in range(PARTITIONS)], asynchronous=False)
    finally:
        consumer.close()
    assert_clean_success(
        kbackup(
            "backup",
            "--kcql",
            f"INSERT INTO {bucket}:nightly SELECT * FROM `{topic}` STOREAS AVRO "
            "PROPERTIES('store.envelope'=true, 'flush.count'=40)",
        )
    )
    return topic, group


def the_evidence(s3: Any, bucket: str) -> DrillEvidence:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=drills_prefix("nightly")).get("Contents", [])
    assert len(listed) == 1, listed
    body = s3.get_object(Bucket=bucket, Key=listed[0]["Key"])["Body"].read()
    return DrillEvidence.model_validate_json(body)


def left_on_the_broker(admin: Any, scratch: str) -> list[str]:
    """Topics and consumer groups whose names start with the drill's scratch prefix."""
    topics = [name for name in admin.list_topics(timeout=30).topics if name.startswith(scratch)]
    groups = admin.list_consumer_groups(request_timeout=30).result(timeout=40)
    return topics + [g.group_id for g in groups.valid if g.group_id.startswith(scratch)]


def test_a_drill_of_a_good_backup_passes_and_leaves_evidence_and_no_scratch_topic(
    kafka_config: dict,
    create_topic: Any,
    bucket: str,
    s3: Any,
    store: Any,
    admin: Any,
    kbackup: Kbackup,
    unique_name: Any,
) -> None:
    topic, group = backed_up(kafka_config, create_topic, bucket, kbackup, unique_name)
    [manifest] = read_chain(store, bucket, "nightly")

    drill = kbackup("drill", f"s3://{bucket}/nightly", "--concurrency", "2")

    assert drill.returncode == 0, drill.stdout + drill.stderr
    evidence = the_evidence(s3, bucket)
    assert evidence.result == "passed" and evidence.problem is None
    assert evidence.backup_id == manifest.backup_id
    assert evidence.manifest_key == f"nightly/_manifests/{manifest.backup_id}.json"
    manifest_bytes = s3.get_object(Bucket=bucket, Key=evidence.manifest_key)["Body"].read()
    import hashlib

    assert evidence.manifest_sha256 == hashlib.sha256(manifest_bytes).hexdigest()
    [drilled] = evidence.topics
    assert (drilled.topic, drilled.scratch_topic) == (topic, f"drill-{evidence.drill_id}-{topic}")
    assert drilled.records == evidence.records == 300 and drilled.seconds > 0
    assert evidence.sample == "all" and evidence.cluster == kafka_config["bootstrap.servers"]
    assert [
        (p.partition, p.expected_records, p.restored_records, p.expected_digest, p.restored_digest, p.ok)
        for p in drilled.partitions
    ] == [
        (e.partition, e.record_count, e.record_count, e.records_digest, e.records_digest, True)
        for e in manifest.partitions
    ]
    scratch = evidence.scratch_prefix
    assert scratch == f"drill-{evidence.drill_id}-"
    assert f"{scratch}{topic}" in evidence.cleanup.deleted_topics
    assert f"{scratch}{group}" in evidence.cleanup.deleted_groups  # translated, then removed
    assert any(g.startswith("kbackup-restore-") for g in evidence.cleanup.deleted_groups)
    assert evidence.cleanup.problems == ()
    assert left_on_the_broker(admin, scratch) == []
    # what the command prints: a row for the topic, the result, where the evidence is
    assert f"{scratch}{topic}" in drill.stdout and "passed" in drill.stdout
    assert f"s3://{bucket}/nightly/_drills/{evidence.drill_id}.json" in drill.stdout


def test_a_drill_of_a_damaged_backup_fails_naming_the_object(
    kafka_config: dict,
    create_topic: Any,
    bucket: str,
    s3: Any,
    store: Any,
    admin: Any,
    kbackup: Kbackup,
    unique_name: Any,
) -> None:
    backed_up(kafka_config, create_topic, bucket, kbackup, unique_name)
    [manifest] = read_chain(store, bucket, "nightly")
    damaged = manifest.partitions[1].objects[0]
    data = bytearray(s3.get_object(Bucket=bucket, Key=damaged.key)["Body"].read())
    data[len(data) // 2] ^= 0xFF  # one byte flipped: the same size, other bytes
    s3.put_object(Bucket=bucket, Key=damaged.key, Body=bytes(data))

    drill = kbackup("drill", f"s3://{bucket}/nightly")

    assert drill.returncode == 1, drill.stdout + drill.stderr
    last = drill.stderr.rstrip().splitlines()[-1]
    assert last.startswith("kbackup drill: restore drill ") and damaged.key in last, drill.stderr[-3000:]
    evidence = the_evidence(s3, bucket)
    assert evidence.result == "failed"
    assert evidence.problem is not None and damaged.key in evidence.problem and "sha256" in evidence.problem
    assert all(p.restored_records is None and not p.ok for t in evidence.topics for p in t.partitions)
    assert evidence.cleanup.problems == ()
    assert left_on_the_broker(admin, evidence.scratch_prefix) == []
    assert (
        json.loads(
            s3.get_object(Bucket=bucket, Key=f"nightly/_drills/{evidence.drill_id}.json")["Body"].read()
        )["result"]
        == "failed"
    )


def test_a_drill_stopped_by_sigint_removes_its_scratch_topics_and_says_so(
    kafka_config: dict, filled_topic: Any, bucket: str, s3: Any, admin: Any, stack_env: dict, tmp_path: Any
) -> None:
    """Ctrl-C in the middle of the restore: the run stops, the scratch topic (with what was already
    restored in it) is deleted all the same, and the evidence says the drill was stopped."""
    from tests.support.cli import kbackup_command, user_environment
    from tests.support.kafka import high_watermarks, numbered_messages
    from tests.support.restore_backups import build_backup

    source = filled_topic("stop", 2, numbered_messages(RECORDS_TO_STOP, 2, key="k{i:06d}", value=200))
    build_backup(s3, kafka_config, source, 2, bucket, "nightly", per_object=2_000)
    process = subprocess.Popen(
        kbackup_command("drill", f"s3://{bucket}/nightly", "--concurrency", "2"),
        env=user_environment(tmp_path, stack_env),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def restoring() -> str | None:
        """The scratch topic, once it holds some records (fails if the drill ended first)."""
        assert process.poll() is None, "the drill ended before it was stopped"
        scratch = [
            t for t in admin.list_topics(timeout=30).topics if t.startswith("drill-") and t.endswith(source)
        ]
        if scratch and sum(high for _, high in high_watermarks(kafka_config, scratch[0], 2)) > 2_000:
            return scratch[0]
        return None

    try:
        scratch_topic = wait_for(
            restoring, timeout=240, what="the drill's scratch topic to fill", interval=0.2
        )
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 130, stdout + stderr
    evidence = the_evidence(s3, bucket)
    assert scratch_topic == f"{evidence.scratch_prefix}{source}"
    assert evidence.result == "failed" and "SIGINT" in (evidence.problem or ""), evidence.problem
    assert scratch_topic in evidence.cleanup.deleted_topics and evidence.cleanup.problems == ()
    assert left_on_the_broker(admin, evidence.scratch_prefix) == []
    assert f"kbackup drill: restore drill {evidence.drill_id} " in stderr, stderr[-3000:]
    assert "failed: stopped: SIGINT received" in stderr and "kbackup drill: stopped by SIGINT" in stderr
