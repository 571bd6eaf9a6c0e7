"""User story: an engineer backs up a topic from the command line, lists it, verifies it, and
learns at once when an object in the bucket was corrupted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Kbackup
from tests.support.cli import assert_clean_success
from tests.support.kafka import produce
from tests.support.topics import tricky_messages

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_backup_ls_verify_and_a_corrupted_object(
    kafka_config: dict, create_topic: Any, bucket: str, s3: Any, kbackup: Kbackup
) -> None:
    topic = create_topic("cli", partitions=4)
    produce(kafka_config, topic, tricky_messages(random_per_partition=50))

    backup = kbackup(
        "backup",
        "--kcql",
        f"INSERT INTO {bucket}:nightly SELECT * FROM `{topic}` STOREAS PARQUET PROPERTIES('store.envelope'=true)",
    )
    assert_clean_success(backup)
    assert f"{13 + 4 * 50} records" in backup.stdout

    listing = kbackup("ls", f"s3://{bucket}/nightly")
    assert_clean_success(listing)
    assert topic in listing.stdout and "PARQUET" in listing.stdout

    assert_clean_success(kbackup("verify", f"s3://{bucket}/nightly", "--deep"))

    key = (
        f"nightly/{topic}/2/"
        + sorted(
            o["Key"].rsplit("/", 1)[1]
            for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"nightly/{topic}/2/")["Contents"]
        )[0]
    )
    head = s3.head_object(Bucket=bucket, Key=key)
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data), Metadata=head["Metadata"])

    verify = kbackup("verify", f"s3://{bucket}/nightly", "--deep")
    assert verify.returncode == 1
    assert key in verify.stderr


def test_bad_kcql_exits_2_with_the_position(kbackup: Kbackup) -> None:
    result = kbackup("backup", "--kcql", "INSERT INTO my-bucket:backups SELECT * FROM sales STORE AVRO")
    assert result.returncode == 2
    assert "line 1, column 51" in result.stderr
    assert "^" in result.stderr


def test_missing_bucket_exits_1_naming_it(create_topic: Any, unique_name: Any, kbackup: Kbackup) -> None:
    topic = create_topic("nob")
    missing = unique_name("nobucket")
    result = kbackup("backup", "--kcql", f"INSERT INTO {missing} SELECT * FROM `{topic}`")
    assert result.returncode == 1
    assert f"bucket {missing!r} does not exist at http://127.0.0.1" in result.stderr


def test_an_expected_error_in_a_worker_process_shows_no_traceback(
    kafka_config: dict, create_topic: Any, bucket: str, kbackup: Kbackup
) -> None:
    """A task failing on a process pool with an expected error (a record lacking its PARTITIONBY
    header) is said in one line, with no traceback from kbackup's process or the workers'. (Prefect
    logs a failure that is not retried without its traceback anyway; the workers' formatter, which
    drops it when a retryable error runs out of retries, is tested in tests/unit/test_log_format.py.)"""
    topic = create_topic("noheader", partitions=2)
    produce(kafka_config, topic, ({"key": b"k", "value": b"v", "partition": i % 2} for i in range(10)))

    result = kbackup(
        "backup",
        "--task-runner",
        "processes",
        "--concurrency",
        "2",
        "--kcql",
        f"INSERT INTO {bucket}:nohdr SELECT * FROM `{topic}` PARTITIONBY _header.region STOREAS JSON",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the backup failed: PARTITIONBY _header.region: no header 'region'" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
