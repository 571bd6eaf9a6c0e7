"""User story: an operator backs up and restores through SASL_SSL with a SCRAM password and a
scoped S3 key, and neither secret turns up anywhere a person or a log shipper could read it: not in
the command's output, not in the Prefect run logs, artifacts, flow-run parameters or task runs
(read back from the API), and not in any log file. A failed login is reported without it too.

Runs against the session's own stack (`own_stack`), which has the SASL_SSL listener and the
scoped S3 identities; the AWS secret markers are the identities' random secrets from that stack.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import assert_clean_success, run_kbackup
from tests.support.kafka import consume_all, create_topic, delete_topics, produce
from tests.support.prefect_records import prefect_records
from tests.support.secure import BACKUP_ACLS, RESTORE_ACLS, SecureStack
from tests.support.topics import topic_digests, tricky_messages

pytestmark = pytest.mark.usefixtures("prefect_harness")

Kbackup = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kbackup(tmp_path: Path) -> Kbackup:
    """The installed `kbackup`, run from a temporary folder against the test's Prefect API, logging
    as much as it can: Prefect at DEBUG, our own loggers (librdkafka's lines) into the run logs."""
    from prefect.settings import PREFECT_API_URL

    def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        extra = {
            "PREFECT_API_URL": str(PREFECT_API_URL.value()),
            "PREFECT_LOGGING_LEVEL": "DEBUG",
            "PREFECT_LOGGING_EXTRA_LOGGERS": "kbackup",
            **env,
        }
        return run_kbackup(*args, cwd=tmp_path, env=extra)

    return run


@pytest.fixture
def source(secure: SecureStack, unique_name: Callable[[str], str]) -> Iterator[tuple[str, dict[int, str]]]:
    admin = secure.admin()
    topic = unique_name("marker")
    create_topic(admin, topic, 2, {})
    produce(secure.plaintext, topic, tricky_messages(partitions=2, random_per_partition=20))
    yield topic, topic_digests(consume_all(secure.plaintext, topic, 2))
    delete_topics(admin, [topic])


def test_secrets_appear_in_no_output_log_parameter_or_artifact(
    secure: SecureStack,
    source: tuple[str, dict[int, str]],
    unique_name: Callable[[str], str],
    kbackup: Kbackup,
    own_stack: Any,
    tmp_path: Path,
) -> None:
    topic, expected = source
    prefix, target = unique_name("bk"), unique_name("dst")
    sasl_marker = f"kbackup-marker-sasl-{uuid.uuid4().hex}"
    wrong_marker = f"kbackup-marker-wrong-{uuid.uuid4().hex}"
    backup_s3, restore_s3 = secure.s3_env("backup"), secure.s3_env("restore")
    markers = {
        "SASL password": sasl_marker,
        "wrong SASL password": wrong_marker,
        "backup identity's AWS secret": backup_s3["AWS_SECRET_ACCESS_KEY"],
        "restore identity's AWS secret": restore_s3["AWS_SECRET_ACCESS_KEY"],
    }
    backup_user, _ = secure.create_user(BACKUP_ACLS, password=sasl_marker, topic=topic)
    restore_user, _ = secure.create_user(RESTORE_ACLS, password=sasl_marker, target=target)
    kcql = f"INSERT INTO {secure.bucket}:{prefix} SELECT * FROM `{topic}` STOREAS PARQUET PROPERTIES('store.envelope'=true)"

    started = datetime.now(UTC) - timedelta(seconds=5)
    runs = {
        "backup": kbackup(
            "backup", "--kcql", kcql, env={**secure.kafka_env(backup_user, sasl_marker), **backup_s3}
        ),
        "restore": kbackup(
            "restore",
            "--kcql",
            f"INSERT INTO `{target}` SELECT * FROM {secure.bucket}:{prefix}",
            env={**secure.kafka_env(restore_user, sasl_marker), **restore_s3},
        ),
        "backup with a wrong password": kbackup(
            "backup", "--kcql", kcql, env={**secure.kafka_env(backup_user, wrong_marker), **backup_s3}
        ),
    }
    try:
        assert_clean_success(runs["backup"])
        assert_clean_success(runs["restore"])
        assert topic_digests(consume_all(secure.plaintext, target, 2)) == expected
    finally:
        delete_topics(secure.admin(), [target])
    failed = runs["backup with a wrong password"]
    assert failed.returncode == 1
    assert f"SASL authentication failed for user {backup_user!r}" in failed.stderr

    places = {f"{name} stdout": run.stdout for name, run in runs.items()}
    places |= {f"{name} stderr": run.stderr for name, run in runs.items()}
    places |= prefect_records(started)
    log_files = [p for p in tmp_path.rglob("*") if p.is_file()]
    log_files += [p for p in (Path(own_stack.stack_dir) / "logs").rglob("*") if p.is_file()]
    places |= {str(p): p.read_text(errors="replace") for p in log_files}
    # What was read back is the runs': their parameters, artifacts and (the wrong password's) librdkafka lines.
    assert places["flow runs (parameters, states)"].count(topic) >= 2 and prefix in places["artifacts"]
    assert "kbackup.librdkafka" in places["run logs"]
    leaks = [
        f"{what} in {where}"
        for what, marker in markers.items()
        for where, text in places.items()
        if marker in text
    ]
    assert not leaks, leaks
