"""PARTITIONBY values that are hostile to object keys (`\\`, `..`, `=`, `?`, spaces at the ends,
control characters, unicode, empty, missing): the backup's keys are what the bucket lists,
`verify --deep` passes, and a restore gives back every record — all of them, or exactly the
ones a `restore.filter` on such a value selects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flows.backup import BackupParameters, backup_flow
from flows.restore import RestoreParameters, restore_flow
from flows.verify import VerifyParameters, verify_flow
from layout.keys import parse_object_key
from layout.manifest import MANIFESTS_FOLDER
from tests.support.kafka import consume_all, produce
from tests.support.topics import topic_digests

pytestmark = pytest.mark.usefixtures("prefect_harness")

# Values of the PARTITIONBY field; None: the record has no such field ('partition.missing'='null').
NASTY: list[str | None] = [
    "a\\b",
    "..",
    ".",
    "x=y",
    "q?",
    "#h",
    " spaced ",
    "tab\t",
    "ünï",
    "",
    "null",
    "_empty_",
    "%2F",
    "a/b",
    None,
]
PER_VALUE = 3


def _messages() -> list[dict[str, Any]]:
    messages = []
    for i in range(len(NASTY) * PER_VALUE):
        value = NASTY[i % len(NASTY)]
        document: dict[str, Any] = {"i": i} if value is None else {"i": i, "v": value}
        messages.append({"key": f"k{i}".encode(), "value": json.dumps(document).encode(), "partition": i % 2})
    return messages


def _listing(s3: Any, bucket: str, prefix: str) -> set[str]:
    paginator = s3.get_paginator("list_objects_v2")
    return {
        o["Key"]
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/")
        for o in page.get("Contents", [])
        if f"/{MANIFESTS_FOLDER}/" not in f"/{o['Key']}"
    }


@pytest.mark.parametrize(
    ("include_keys", "wanted"), [(False, "a\\b"), (True, "x=y")], ids=["positional", "hive"]
)
def test_nasty_partition_values_back_up_verify_and_restore(
    include_keys: bool,
    wanted: str,
    kafka_config: dict,
    create_topic: Any,
    bucket: str,
    s3: Any,
    admin: Any,
    unique_name: Any,
) -> None:
    topic = create_topic("nasty", partitions=2)
    produce(kafka_config, topic, _messages())
    source = consume_all(kafka_config, topic, 2)
    props = "'store.envelope'=true, 'partition.missing'='null'" + (
        ", 'partition.include.keys'=true" if include_keys else ""
    )
    [result] = backup_flow(
        BackupParameters(
            kcql=f"INSERT INTO {bucket}:esc SELECT * FROM `{topic}` PARTITIONBY _value.v STOREAS AVRO PROPERTIES({props})",
            verify="full",
        ),
    )
    manifest = result.manifest
    objects = [o for p in manifest.partitions for o in p.objects]
    assert {o.partition_values["v"] for o in objects} == set(NASTY)

    # Every key the manifest names is in a listing of the prefix, and nothing else is.
    listed = _listing(s3, bucket, "esc")
    assert {o.key for o in objects} == listed
    for key in listed:
        segments = key.split("/")
        assert not {".", ".."} & set(segments) and "\\" not in key, key
        assert all(s == s.strip(" ") and s for s in segments), key
    # Keys parse back to the original, unescaped values.
    for o in objects:
        parsed = parse_object_key(o.key, "esc")
        assert (parsed.topic, parsed.last_offset) == (topic, o.last_offset)
        assert list(parsed.partition_values.values()) == [o.partition_values["v"]]

    [report] = verify_flow(VerifyParameters(bucket=bucket, prefix="esc", deep=True))
    assert report.ok and report.records_decoded == len(source)

    everything, filtered = unique_name("all"), unique_name("one")
    try:
        restored = restore_flow(
            RestoreParameters(kcql=f"INSERT INTO `{everything}` SELECT * FROM {bucket}:esc")
        )
        assert restored.ok and restored.records == len(source)
        assert topic_digests(consume_all(kafka_config, everything, 2)) == topic_digests(source)

        selected = restore_flow(
            RestoreParameters(
                kcql=f"INSERT INTO `{filtered}` SELECT * FROM {bucket}:esc "
                f"PROPERTIES('restore.filter'='v={wanted}')"
            )
        )
        got = consume_all(kafka_config, filtered, 2)
        expected = [m for m in source if json.loads(m.value()).get("v") == wanted]
        assert len(expected) == PER_VALUE and selected.records == PER_VALUE
        assert sorted((m.partition(), m.key(), m.value()) for m in got) == sorted(
            (m.partition(), m.key(), m.value()) for m in expected
        )
    finally:
        admin.delete_topics([everything, filtered])
