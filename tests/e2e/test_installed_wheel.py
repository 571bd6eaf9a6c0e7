"""User story: an engineer `pip install`s the project into a virtualenv of their own and uses the
`kbackup` it installs from wherever they are. The wheel is built from the working tree, installed
into a fresh virtualenv (not an editable install), and runs backup → verify → restore from a
folder outside the repository with a temporary Prefect server of its own — every run exits 0
without one ERROR or traceback line, and the restored topic's digests equal the source's."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import assert_clean_success, run_kbackup
from tests.support.kafka import consume_all
from tests.support.topics import topic_digests, tricky_messages

REPO = Path(__file__).resolve().parents[2]
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".stack", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests", "bench"
)


@pytest.fixture(scope="session")
def wheel_kbackup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`kbackup` from the project's wheel, `pip install`ed into a new virtualenv."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(source)],
        check=True,
        timeout=600,
    )
    (wheel,) = (work / "dist").glob("kafka_s3_backup-*.whl")
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    subprocess.run([str(env_dir / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=900)
    return env_dir / "bin" / "kbackup"


def test_the_installed_wheel_backs_up_verifies_and_restores(
    wheel_kbackup: Path,
    kafka_config: dict[str, Any],
    filled_topic: Any,
    bucket: str,
    target_topic: Any,
    tmp_path: Path,
) -> None:
    source = filled_topic("wheel", 3, tricky_messages(partitions=3, random_per_partition=30))
    target = target_topic("restored")

    def kbackup(*args: str) -> subprocess.CompletedProcess[str]:
        # No PREFECT_API_URL: each run starts Prefect's temporary server, as on a user's laptop.
        return run_kbackup(*args, cwd=tmp_path, script=wheel_kbackup)

    backup = kbackup(
        "backup",
        "--kcql",
        f"INSERT INTO {bucket}:wheel SELECT * FROM `{source}` STOREAS AVRO PROPERTIES('store.envelope'=true)",
    )
    assert_clean_success(backup)
    assert f"{13 + 3 * 30} records" in backup.stdout
    assert_clean_success(kbackup("verify", f"s3://{bucket}/wheel", "--deep"))
    restore = kbackup("restore", "--kcql", f"INSERT INTO `{target}` SELECT * FROM {bucket}:wheel")
    assert_clean_success(restore)
    restored = consume_all(kafka_config, target, 3)
    source_messages = consume_all(kafka_config, source, 3)
    assert len(restored) == len(source_messages) == 13 + 3 * 30
    assert topic_digests(restored) == topic_digests(source_messages)
