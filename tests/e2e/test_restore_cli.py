"""`kbackup restore` as a user runs it: killed with SIGKILL in the middle and run again, the
target holds every selected record exactly once, in order; bad KCQL exits 2."""

from __future__ import annotations

import signal
import subprocess

from tests.support.cli import kbackup_command, run_kbackup, user_environment
from tests.support.kafka import consume_all, high_watermarks, numbered_messages, wait_for_records
from tests.support.restore_backups import build_backup

RECORDS = 60_000


def test_killed_restore_resumes_exactly_once(
    kafka_config, s3, filled_topic, bucket, target_topic, stack_env, tmp_path
):
    source = filled_topic("kill", 2, numbered_messages(RECORDS, 2, key="k{i:06d}", value=200))
    build_backup(s3, kafka_config, source, 2, bucket, "k", fmt="AVRO", per_object=2_000)
    target = target_topic()
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:k LIMIT 500"
    env = user_environment(tmp_path, stack_env)
    process = subprocess.Popen(kbackup_command("restore", "--kcql", kcql), env=env, cwd=tmp_path)
    # kill once some are in (the wait ends early if the restore ends by itself)
    written = wait_for_records(
        kafka_config, target, 2, more_than=2_000, timeout=120, running=lambda: process.poll() is None
    )
    assert process.poll() is None, "the restore ended before it was killed"
    assert written > 2_000, f"{written} records restored in 120 s: the kill would test nothing"
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert process.returncode == -signal.SIGKILL
    assert sum(high for _, high in high_watermarks(kafka_config, target, 2)) < RECORDS
    rerun = run_kbackup("restore", "--kcql", kcql, cwd=tmp_path, env=stack_env)
    assert rerun.returncode == 0, rerun.stderr
    restored = consume_all(kafka_config, target, 2)
    source_messages = consume_all(kafka_config, source, 2)
    for partition in (0, 1):
        assert [(m.key(), m.value()) for m in restored if m.partition() == partition] == [
            (m.key(), m.value()) for m in source_messages if m.partition() == partition
        ]


def test_bad_kcql_exits_2_with_the_caret(stack_env, tmp_path):
    result = run_kbackup("restore", "--kcql", "INSERT INTO t SELECT * FORM bucket:prefix", cwd=tmp_path)
    assert result.returncode == 2
    assert "^" in result.stderr


def test_restore_flow_runs_with_prefect(
    kafka_config, s3, filled_topic, bucket, target_topic, prefect_harness
):
    from flows.restore import RestoreParameters, restore_flow

    source = filled_topic("flow", 2, numbered_messages(100, 2, value=b"v"))
    build_backup(s3, kafka_config, source, 2, bucket, "f", per_object=20)
    target = target_topic()
    report = restore_flow(RestoreParameters(kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:f"))
    assert report.ok and report.records == 100 and len(report.checks) == 2
