"""`kbackup verify` and `kbackup restore` on a real backup whose manifest was edited in the bucket
to hold impossible values (issue 24): a negative record count, a window ending before it starts, a
key outside the backup (`../../other/x.avro`, an `s3://` address, an object of another prefix that
is in the bucket). Both refuse it, naming the manifest's key, the field and why, before any object
it names is read; the restore's target topic is never created."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from layout.manifest import manifest_key
from tasks.services.manifest_store import list_backup_ids
from tests.e2e.conftest import Kbackup
from tests.support.cli import assert_clean_success
from tests.support.kafka import produce

pytestmark = pytest.mark.usefixtures("prefect_harness")

Edit = Callable[[dict[str, Any], str], None]


def _set(path: tuple[Any, ...], value: Any) -> Edit:
    def edit(manifest: dict[str, Any], _: str) -> None:
        *parents, last = path
        node = manifest
        for step in parents:
            node = node[step]
        node[last] = value

    return edit


def _key_of_daily(manifest: dict[str, Any], bucket: str) -> None:
    """Point an object of partition 0 at the same object backed up under the prefix `daily/`."""
    entry = manifest["partitions"][0]["objects"][0]
    entry["key"] = "daily/" + entry["key"].removeprefix("nightly/")


# (name, edit, what stderr says: the field and why; {bucket} and {key} filled in)
HOSTILE = [
    (
        "negative record_count",
        _set(("partitions", 1, "record_count"), -5),
        "partitions[1].record_count ({topic}/1): -5, it cannot be less than 0",
    ),
    (
        "negative end_offset",
        _set(("partitions", 0, "end_offset"), -1),
        "partitions[0].end_offset ({topic}/0): -1 is before the start_offset 0",
    ),
    (
        "key outside the prefix",
        _set(("partitions", 0, "objects", 0, "key"), "../../other/x.avro"),
        "partitions[0].objects[0].key ({topic}/0 object ../../other/x.avro): key '../../other/x.avro' "
        "lies outside the backup: it is not under the backup's prefix 'nightly/'",
    ),
    (
        "s3 address",
        lambda manifest, bucket: _set(
            ("partitions", 0, "objects", 0, "key"), f"s3://{bucket}/nightly/x.avro"
        )(manifest, bucket),
        "key 's3://{bucket}/nightly/x.avro' is an address, not a key of the backup's bucket: it lies "
        "outside the backup (s3://<bucket>/nightly/)",
    ),
    (
        "another prefix's object",
        _key_of_daily,
        "it is not under the backup's prefix 'nightly/'",
    ),
]


def test_hostile_manifests_are_refused_by_verify_and_restore_before_anything_is_written(
    kafka_config: dict,
    create_topic: Any,
    target_topic: Any,
    admin: Any,
    bucket: str,
    s3: Any,
    store: Any,
    kbackup: Kbackup,
) -> None:
    topic = create_topic("hostile", partitions=3)
    produce(
        kafka_config,
        topic,
        ({"key": f"k{i}".encode(), "value": f"v{i}".encode(), "partition": i % 3} for i in range(60)),
    )
    for prefix in ("nightly", "daily"):  # `daily`: another backup's objects, in the same bucket
        assert_clean_success(
            kbackup(
                "backup",
                "--kcql",
                f"INSERT INTO {bucket}:{prefix} SELECT * FROM `{topic}` STOREAS AVRO "
                "PROPERTIES('store.envelope'=true, 'flush.count'=8)",
            )
        )
    [backup_id] = list_backup_ids(store, bucket, "nightly")
    key = manifest_key("nightly", backup_id)
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert_clean_success(kbackup("verify", f"s3://{bucket}/nightly", "--deep"))

    for name, edit, said in HOSTILE:
        manifest = json.loads(original)
        edit(manifest, bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
        expected = said.format(topic=topic, bucket=bucket)
        for verify in (["verify", f"s3://{bucket}/nightly"], ["verify", f"s3://{bucket}/nightly", "--deep"]):
            result = kbackup(*verify)
            assert result.returncode == 1, (name, result.stdout, result.stderr[-3000:])
            assert f"manifest s3://{bucket}/{key}: impossible values" in result.stderr, (
                name,
                result.stderr[-3000:],
            )
            assert expected in result.stderr, (name, result.stderr[-3000:])
            assert "missing from the bucket" not in result.stderr and "Bad Request" not in result.stderr, name
        target = target_topic()
        restore = kbackup(
            "restore", "--kcql", f"INSERT INTO `{target}` SELECT * FROM {bucket}:nightly STOREAS AVRO"
        )
        assert restore.returncode == 1, (name, restore.stdout, restore.stderr[-3000:])
        assert f"manifest s3://{bucket}/{key}: impossible values" in restore.stderr, (
            name,
            restore.stderr[-3000:],
        )
        assert expected in restore.stderr, (name, restore.stderr[-3000:])
        topics = admin.list_topics(timeout=10).topics
        assert target not in topics, f"{name}: the restore created {target}"

    s3.put_object(Bucket=bucket, Key=key, Body=original)  # the manifest as the backup wrote it restores
    target = target_topic()
    assert_clean_success(
        kbackup("restore", "--kcql", f"INSERT INTO `{target}` SELECT * FROM {bucket}:nightly STOREAS AVRO")
    )
