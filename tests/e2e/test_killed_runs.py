"""User story: the machine's supervisor SIGKILLs a `kbackup backup` or `kbackup restore` that runs its
partitions in worker processes (a process pool, a local Dask cluster) — while the workers start,
mid-export or mid-produce, during the backup's verification. Nothing of the run stays behind: 10 s
later none of its processes (its worker processes, multiprocessing's resource tracker, its temporary
Prefect API) is alive; and the next run of the same backup or restore completes.

The moment of each kill is picked from the run's own output, its child processes, the bucket and
the target topic, never from a sleep. Every process of a run carries a marker in its environment
(KBACKUP_TEST_RUN), so that one re-parented to init after the kill is still found."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import kbackup_command, run_kbackup, user_environment
from tests.support.kafka import produce

RECORDS = 200_000
PARTITIONS = 4
LEASE_SECONDS = 5  # a killed backup's lock is free this long (plus 2 s) after it died
GONE_WITHIN_S = 10
MARKER = "KBACKUP_TEST_RUN"
# Bounds of the waits for a moment (the two-core test machine, shared: a worker's start took 40 s).
MOMENT_TIMEOUT_S = 240
SNAPSHOT_DONE = "Task run 'snapshot-offsets"  # its only line: "Finished in state Completed()"
EXPORT_DONE = "Task run 'export "


def _kcql(bucket: str, prefix: str, topic: str) -> str:
    return (
        f"INSERT INTO {bucket}:{prefix} SELECT * FROM `{topic}` STOREAS AVRO "
        "PROPERTIES('store.envelope'=true, 'flush.count'=2500)"
    )


@pytest.fixture(scope="module")
def big_topic(kafka_config: dict[str, Any], admin: Any) -> Iterator[str]:
    from tests.support.kafka import create_topic, delete_topics

    name = f"killed-{uuid.uuid4().hex[:8]}"
    create_topic(admin, name, PARTITIONS, {})
    value = bytes(range(256)) * 2
    produce(
        kafka_config,
        name,
        ({"partition": i % PARTITIONS, "key": f"k{i:07d}".encode(), "value": value} for i in range(RECORDS)),
    )
    yield name
    delete_topics(admin, [name])


@pytest.fixture(scope="module")
def backed_up(big_topic: str, s3: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(bucket, prefix) of a complete backup of big_topic, for the restores."""
    bucket = f"killed-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    result = run_kbackup(
        "backup", "--task-runner", "threads", "--kcql", _kcql(bucket, "src", big_topic),
        cwd=tmp_path_factory.mktemp("backed-up"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return bucket, "src"


# --- a run's processes ---------------------------------------------------------------------------


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""  # gone meanwhile, or not ours to read


def _alive(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def _command_line(pid: int) -> str:
    return _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _read(str(stat)).rsplit(b")", 1)
        if len(fields) == 2 and int(fields[1].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


@dataclass
class Run:
    """A `kbackup` process, its output in a file, every process it starts marked in its environment."""

    process: subprocess.Popen[str]
    output: Path
    marker: str
    before_kill: dict[int, str] = field(default_factory=dict)

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def processes(self) -> dict[int, str]:
        """The live processes carrying this run's marker (kbackup's, and any it left behind)."""
        needle = f"{MARKER}={self.marker}".encode()
        return {
            int(environ.parent.name): _command_line(int(environ.parent.name))
            for environ in Path("/proc").glob("[0-9]*/environ")
            if needle in _read(str(environ)).split(b"\0") and _alive(int(environ.parent.name))
        }

    def workers(self) -> list[int]:
        """kbackup's worker processes (spawned by multiprocessing: a process pool's, a Dask cluster's)."""
        return [pid for pid in _tree(self.process.pid) if "multiprocessing.spawn" in _command_line(pid)]

    def wait_for(self, condition: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + MOMENT_TIMEOUT_S
        while not (value := condition()):
            assert self.process.poll() is None, f"kbackup ended before {what}:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {what} within {MOMENT_TIMEOUT_S} s:\n{self.text()}"
            time.sleep(0.05)
        return value

    def kill(self) -> None:
        """SIGKILL kbackup alone, recording its whole process tree just before."""
        self.before_kill = {pid: _command_line(pid) for pid in _tree(self.process.pid)}
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def left_behind(self) -> dict[int, str]:
        """The run's processes still alive GONE_WITHIN_S after the kill (none, or after that long)."""
        deadline = time.monotonic() + GONE_WITHIN_S
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left


@contextlib.contextmanager
def started(cwd: Path, *args: str) -> Iterator[Run]:
    """`kbackup ARGS` with a short backup lease; whatever of it is left at the end is SIGKILLed
    (only this run's processes, by their marker)."""
    marker = uuid.uuid4().hex
    output = cwd / f"output-{marker[:8]}.txt"
    env = user_environment(cwd, {MARKER: marker, "KBACKUP_LOCK_LEASE_SECONDS": str(LEASE_SECONDS)})
    with output.open("w") as sink:
        process = subprocess.Popen(
            kbackup_command(*args),
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    run = Run(process, output, marker)
    try:
        yield run
    finally:
        for pid in run.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(30)


def _assert_nothing_left(run: Run) -> None:
    left = run.left_behind()
    tree = "\n".join(f"  {pid}: {line[:160]}" for pid, line in run.before_kill.items())
    assert not left, (
        f"{len(left)} of the killed run's processes alive {GONE_WITHIN_S} s after the kill: "
        f"{ {pid: line[:160] for pid, line in left.items()} }\nits tree before the kill:\n{tree}"
    )


def _workers_starting(run: Run, runner: str, after: str | None = None) -> list[int]:
    """The moment the workers start: `after` (a backup: its offsets snapshot) is in the output, the
    tasks are submitted and the first worker process exists (it imports for a second or more
    before it takes a task)."""
    if after is not None:
        run.wait_for(lambda: after in run.text(), repr(after))
    run.wait_for(lambda: f"tasks on {runner}" in run.text(), "task submission")
    return run.wait_for(run.workers, "worker process")


def _lines(run: Run, *parts: str) -> int:
    return sum(all(part in line for part in parts) for line in run.text().splitlines())


def _objects(s3: Any, bucket: str, prefix: str) -> int:
    return int(s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0))


def _manifests(s3: Any, bucket: str, prefix: str) -> int:
    """The manifests committed under `prefix` (the lock's leases are in a folder below)."""
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/_manifests/", Delimiter="/")
    return len(listing.get("Contents", []))


# --- backups -------------------------------------------------------------------------------------


@pytest.mark.parametrize("runner", ["processes", "dask"])
def test_a_backup_killed_while_its_workers_start_leaves_nothing_and_reruns(
    big_topic: str, s3: Any, bucket: str, tmp_path: Path, runner: str
) -> None:
    kcql = _kcql(bucket, "k", big_topic)
    with started(tmp_path, "backup", "--task-runner", runner, "--concurrency", "2", "--kcql", kcql) as run:
        _workers_starting(run, runner, SNAPSHOT_DONE)
        run.kill()
        _assert_nothing_left(run)
    assert _manifests(s3, bucket, "k") == 0

    # The killed run's lock is taken over once its lease ran out; the next backup completes.
    rerun = run_kbackup("backup", "--task-runner", runner, "--concurrency", "2", "--kcql", kcql, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{RECORDS} records" in rerun.stdout


@pytest.mark.parametrize("runner", ["processes", "dask"])
def test_a_backup_killed_mid_export_leaves_nothing(
    big_topic: str, s3: Any, bucket: str, tmp_path: Path, runner: str
) -> None:
    kcql = _kcql(bucket, "k", big_topic)
    with started(tmp_path, "backup", "--task-runner", runner, "--concurrency", "2", "--kcql", kcql) as run:
        _workers_starting(run, runner, SNAPSHOT_DONE)
        run.wait_for(lambda: _objects(s3, bucket, f"k/{big_topic}/"), "data object")
        assert run.workers(), "the workers ended before the kill"
        run.kill()
        _assert_nothing_left(run)
    assert _manifests(s3, bucket, "k") == 0


def test_a_backup_killed_during_its_verification_leaves_nothing(
    big_topic: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    kcql = _kcql(bucket, "k", big_topic)
    with started(
        tmp_path, "backup", "--task-runner", "processes", "--concurrency", "2", "--kcql", kcql
    ) as run:
        _workers_starting(run, "processes", SNAPSHOT_DONE)
        # Both export tasks done (two at a time: two work units): verification comes next.
        run.wait_for(lambda: _lines(run, EXPORT_DONE, "Completed()") >= 2, "the exports' end")
        run.kill()
        assert "Task run 'verify-backup" not in run.text(), "killed after the verification, not during it"
        _assert_nothing_left(run)
    assert _manifests(s3, bucket, "k") == 0


# --- restores ------------------------------------------------------------------------------------


def _high_watermarks(kafka_config: dict[str, Any], topic: str) -> int:
    from tests.support.kafka import high_watermarks

    try:
        return sum(high for _, high in high_watermarks(kafka_config, topic, PARTITIONS))
    except Exception:  # noqa: BLE001 - the topic may not exist yet
        return 0


def _restore(bucket: str, prefix: str, target: str) -> tuple[str, ...]:
    kcql = f"INSERT INTO `{target}` SELECT * FROM {bucket}:{prefix}"
    return ("restore", "--task-runner", "processes", "--concurrency", "2", "--kcql", kcql)


def test_a_restore_killed_while_its_workers_start_leaves_nothing(
    backed_up: tuple[str, str], target_topic: Callable[..., str], tmp_path: Path
) -> None:
    bucket, prefix = backed_up
    with started(tmp_path, *_restore(bucket, prefix, target_topic())) as run:
        _workers_starting(run, "processes")
        run.kill()
        _assert_nothing_left(run)


def test_a_restore_killed_mid_produce_leaves_nothing_and_a_rerun_is_exactly_once(
    backed_up: tuple[str, str],
    big_topic: str,
    kafka_config: dict[str, Any],
    target_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    from tests.support.kafka import consume_all
    from tests.support.topics import topic_digests

    bucket, prefix = backed_up
    target = target_topic()
    args = _restore(bucket, prefix, target)
    with started(tmp_path, *args) as run:
        _workers_starting(run, "processes")
        run.wait_for(lambda: _high_watermarks(kafka_config, target) > 0, "records in the target")
        assert run.workers(), "the workers ended before the kill"
        run.kill()
        _assert_nothing_left(run)

    rerun = run_kbackup(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    restored = consume_all(kafka_config, target, PARTITIONS)
    source = consume_all(kafka_config, big_topic, PARTITIONS)
    assert len(restored) == len(source) == RECORDS
    assert topic_digests(restored) == topic_digests(source)
