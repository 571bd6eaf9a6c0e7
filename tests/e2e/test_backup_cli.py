"""User story: an engineer backs up a topic from the command line, lists it, verifies it, and
learns at once when an object in the bucket was corrupted."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from kbackup.cli import main
from tests.support.kafka import produce
from tests.support.topics import tricky_messages

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _kbackup(*args: str) -> subprocess.CompletedProcess[str]:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    return subprocess.run(
        [sys.executable, "-m", "kbackup.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_backup_ls_verify_and_a_corrupted_object(
    kafka_config: dict, create_topic: Any, bucket: str, s3: Any
) -> None:
    topic = create_topic("cli", partitions=4)
    produce(kafka_config, topic, tricky_messages(random_per_partition=50))

    backup = _kbackup(
        "backup",
        "--kcql",
        f"INSERT INTO {bucket}:nightly SELECT * FROM `{topic}` STOREAS PARQUET PROPERTIES('store.envelope'=true)",
    )
    assert backup.returncode == 0, backup.stderr
    assert f"{13 + 4 * 50} records" in backup.stdout

    listing = _kbackup("ls", f"s3://{bucket}/nightly")
    assert listing.returncode == 0, listing.stderr
    assert topic in listing.stdout and "PARQUET" in listing.stdout

    assert main(["verify", f"s3://{bucket}/nightly", "--deep"]) == 0

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

    verify = _kbackup("verify", f"s3://{bucket}/nightly", "--deep")
    assert verify.returncode == 1
    assert key in verify.stderr


def test_bad_kcql_exits_2_with_the_position(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backup", "--kcql", "INSERT INTO my-bucket:backups SELECT * FROM sales STORE AVRO"]) == 2
    err = capsys.readouterr().err
    assert "line 1, column 51" in err
    assert "^" in err


def test_missing_bucket_exits_1_naming_it(
    kafka_config: dict, create_topic: Any, unique_name: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = create_topic("nob")
    missing = unique_name("nobucket")
    assert main(["backup", "--kcql", f"INSERT INTO {missing} SELECT * FROM `{topic}`"]) == 1
    assert f"bucket {missing!r} does not exist at http://127.0.0.1" in capsys.readouterr().err
