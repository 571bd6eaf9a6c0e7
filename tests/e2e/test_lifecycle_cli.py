"""The backup lifecycle as a user runs it (issue 15's "Done when"): hourly-style backups at short
intervals — incremental, and full ones starting new chains — pruned with `--keep-last` and then
`--keep-within`, and every kept restore point restored with records digests equal to the source
topic's at that point. A prune stopped after its first step leaves every kept point restorable."""

from __future__ import annotations

import time
from typing import Any

from layout.chains import chain_of
from layout.manifest import manifest_key
from tasks.services.manifest_store import read_chain
from tests.support.cli import run_kbackup
from tests.support.kafka import consume_all, produce
from tests.support.topics import topic_digests

PARTITIONS = 2


def _batch(round_number: int) -> list[dict[str, Any]]:
    """Twenty records a round: keys, empty and null values, headers with duplicates and nulls."""
    return [
        {
            "partition": i % PARTITIONS,
            "key": f"r{round_number}-{i}".encode() if i % 5 else None,
            "value": b"" if i % 7 == 0 else f"value {round_number}/{i}".encode() * (i % 3 + 1),
            "headers": [("h", b"1"), ("h", None), ("round", str(round_number).encode())],
            "timestamp": 1_700_000_000_000 + round_number * 1000 + i,
        }
        for i in range(20)
    ]


class History:
    """The source's digests at each restore point, by backup id."""

    def __init__(self, kafka_config: dict[str, Any], store: Any, bucket: str, topic: str, cwd: Any, env: Any):
        self.kafka_config, self.store, self.bucket, self.topic = kafka_config, store, bucket, topic
        self.cwd, self.env = cwd, env
        self.digests: dict[str, dict[int, str]] = {}
        self.rounds = 0

    def backup(self, *flags: str) -> str:
        produce(self.kafka_config, self.topic, _batch(self.rounds))
        self.rounds += 1
        kcql = (
            f"INSERT INTO {self.bucket}:life SELECT * FROM `{self.topic}` STOREAS AVRO "
            "PROPERTIES('store.envelope'=true, 'flush.count'=7)"
        )
        result = run_kbackup("backup", "--kcql", kcql, *flags, cwd=self.cwd, env=self.env)
        assert result.returncode == 0, result.stderr
        newest = read_chain(self.store, self.bucket, "life")[-1]
        self.digests[newest.backup_id] = topic_digests(consume_all(self.kafka_config, self.topic, PARTITIONS))
        return newest.backup_id

    def kbackup(self, *args: str) -> Any:
        return run_kbackup(*args, cwd=self.cwd, env=self.env)


def _backup_objects(s3: Any, bucket: str) -> set[str]:
    """The prefix's objects and manifests (not the lock's leases, which every prune takes)."""
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="life/").get("Contents", [])
    return {o["Key"] for o in listed if "/_lock/" not in o["Key"]}


def _restore_points(history: History, points: list[str], target_topic: Any) -> None:
    """Restore each point into a topic of its own: equal to the source at that point."""
    for point in points:
        target = target_topic("point")
        result = history.kbackup(
            "restore",
            "--kcql",
            f"INSERT INTO `{target}` SELECT * FROM {history.bucket}:life",
            "--point",
            point,
        )
        assert result.returncode == 0, result.stderr
        assert (
            topic_digests(consume_all(history.kafka_config, target, PARTITIONS)) == history.digests[point]
        ), point


def test_prune_keeps_every_kept_point_restorable(
    kafka_config, s3, store, create_topic, bucket, target_topic, stack_env, tmp_path
):
    topic = create_topic("life", partitions=PARTITIONS)
    history = History(kafka_config, store, bucket, topic, tmp_path, stack_env)
    chain_a = [history.backup(), history.backup(), history.backup()]  # the first is full
    chain_b = [history.backup("--full"), history.backup(), history.backup()]
    manifests = read_chain(store, bucket, "life")
    assert [m.chain_id for m in manifests] == [chain_a[0]] * 3 + [chain_b[0]] * 3
    assert chain_of(manifests, chain_b[2]) == manifests[3:]

    listing = history.kbackup("ls", f"s3://{bucket}/life")
    assert listing.returncode == 0, listing.stderr
    assert all(point in listing.stdout for point in chain_a + chain_b)
    assert f"{chain_b[0]} (3)" in listing.stdout  # the newest point reads three backups

    objects_before = _backup_objects(s3, bucket)
    dry = history.kbackup("prune", f"s3://{bucket}/life", "--keep-last", "3", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would delete: 3 manifests" in dry.stdout
    assert _backup_objects(s3, bucket) == objects_before

    pruned = history.kbackup("prune", f"s3://{bucket}/life", "--keep-last", "3")
    assert pruned.returncode == 0, pruned.stderr
    assert "deleted: 3 manifests" in pruned.stdout
    remaining = read_chain(store, bucket, "life")
    assert [m.backup_id for m in remaining] == chain_b
    kept_keys = {o.key for m in remaining for p in m.partitions for o in p.objects}
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="life/")["Contents"]}
    assert kept_keys <= left
    assert not [k for k in left - kept_keys if not k.startswith("life/_manifests/")]  # chain A's objects went

    gone = history.kbackup(
        "restore", "--kcql", f"INSERT INTO `x-{topic}` SELECT * FROM {bucket}:life", "--point", chain_a[2]
    )
    assert gone.returncode == 1 and f"no backup {chain_a[2]!r}" in gone.stderr

    # Keep within: a new chain after a pause; the policy keeps its points (and the newest), drops chain B.
    time.sleep(41)
    chain_c = [history.backup("--full"), history.backup()]
    within = history.kbackup("prune", f"s3://{bucket}/life", "--keep-within", "40s")
    assert within.returncode == 0, within.stderr
    assert [m.backup_id for m in read_chain(store, bucket, "life")] == chain_c
    _restore_points(history, chain_c, target_topic)


def test_a_prune_stopped_after_its_manifests_leaves_kept_points_restorable(
    kafka_config, s3, store, create_topic, bucket, target_topic, stack_env, tmp_path
):
    """The prune's first step (manifests, newest first) alone — as a prune killed right after it
    — then the kept points restore; the next prune deletes the objects left behind."""
    from datetime import UTC, datetime

    from layout.chains import retention_plan
    from tasks.lifecycle.prune import PruneReport, _delete_manifests

    topic = create_topic("stop", partitions=PARTITIONS)
    history = History(kafka_config, store, bucket, topic, tmp_path, stack_env)
    points = [history.backup(), history.backup(), history.backup("--full"), history.backup()]
    manifests = read_chain(store, bucket, "life")
    plan = retention_plan(manifests, datetime.now(UTC), keep_last=2)
    assert plan.dropped == tuple(points[:2])
    report = PruneReport(
        bucket=bucket, prefix="life", policy="keep last 2", dry_run=False, started_at=datetime.now(UTC)
    )
    _delete_manifests(store, bucket, "life", manifests, plan, report)
    assert s3.list_objects_v2(Bucket=bucket, Prefix=manifest_key("life", points[0]))["KeyCount"] == 0
    _restore_points(history, points[2:], target_topic)

    again = history.kbackup("prune", f"s3://{bucket}/life", "--keep-last", "2")
    assert again.returncode == 0, again.stderr
    assert "deleted: 0 manifests" in again.stdout and "uncommitted leftovers" in again.stdout
    kept_keys = {o.key for m in read_chain(store, bucket, "life") for p in m.partitions for o in p.objects}
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="life/")["Contents"]}
    assert not [k for k in left - kept_keys if not k.startswith("life/_manifests/")]
