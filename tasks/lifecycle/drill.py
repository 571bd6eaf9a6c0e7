"""The restore drill's evidence (docs/operators-guide.md, "Restore drills"): the restore point it
drills (read from the bucket, its manifest's bytes hashed), what the restore's read-back check found
per partition against what the manifests say, the recovery time, and the result — as the JSON
document `<prefix>/_drills/<drill id>.json` (layout/drills.py) and as markdown for the run's
artifact and the command line.

The drill restores with the restore's own machinery (flows/drill.py composes flows.restore); the
scratch topics and groups are removed by tasks/lifecycle/drill_cleanup.py.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from core.errors import KbackupError, RestoreError
from layout.chains import chain_of
from layout.drills import DrillCleanup, DrillEvidence, DrillPartition, DrillTopic, drill_key
from layout.manifest import Manifest, manifest_key
from layout.restore.errors import NothingToRestoreError
from tasks.restore.check import PartitionCheck
from tasks.restore.errors import PreflightError
from tasks.restore.report import RestoreFailed, RestoreReport
from tasks.runtime.retry import RETRY_OPTIONS
from tasks.services.manifest_store import read_chain

if TYPE_CHECKING:
    from tasks.services.object_store import ObjectStore

ARTIFACT_KEY = "kbackup-drill"


class Expected(BaseModel):
    """One partition of the restore point, as its chain's manifests say."""

    topic: str
    partition: int
    records: int
    bytes: int
    digests: list[str]  # the records digest of each manifest's part holding records, oldest first

    @property
    def digest(self) -> str | None:
        """The manifests' digest of the whole partition: one manifest's, when one backup holds its
        records. A chain's parts are compared one by one while restoring (the restore's segment
        check); their digests do not combine into one."""
        return self.digests[0] if len(self.digests) == 1 else None


class DrillPoint(BaseModel):
    """The restore point a drill restores: its manifest, as read, and its chain's expectations."""

    bucket: str
    prefix: str
    backup_id: str
    manifest_key: str
    manifest_sha256: str
    chain: list[str]
    partitions: list[Expected]


class DrillFailed(RestoreError):  # noqa: N818 - the drill's outcome, as RestoreFailed is the restore's
    """The drill failed: `problem` names the object or the topic/partition; its evidence says the
    same at `evidence_key`."""

    def __init__(self, evidence: DrillEvidence, evidence_key: str | None) -> None:
        self.evidence = evidence
        self.problem = evidence.problem or "failed"
        self.evidence_key = evidence_key
        where = f" (evidence: s3://{evidence.bucket}/{evidence_key})" if evidence_key else ""
        super().__init__(
            f"restore drill {evidence.drill_id} of s3://{evidence.bucket}/{evidence.prefix} "
            f"(restore point {evidence.backup_id}) failed: {self.problem}{where}"
        )


def read_point(
    store: ObjectStore, bucket: str, prefix: str, point: str | None, partitions: Sequence[int] | None
) -> DrillPoint:
    """The restore point `point` (the newest when None): its manifest's sha256 (of the bytes in the
    bucket) and, per partition of its chain (those in `partitions` when given), the records and
    digests the manifests hold."""
    store.check_bucket(bucket)
    manifests = read_chain(store, bucket, prefix)
    if not manifests:
        raise NothingToRestoreError(bucket, prefix, "no restore point (manifest) to drill under the prefix")
    chain = chain_of(manifests, point or manifests[-1].backup_id)
    key = manifest_key(prefix, chain[-1].backup_id)
    return DrillPoint(
        bucket=bucket,
        prefix=prefix,
        backup_id=chain[-1].backup_id,
        manifest_key=key,
        manifest_sha256=hashlib.sha256(store.get(bucket, key)).hexdigest(),
        chain=[m.backup_id for m in chain],
        partitions=expected_partitions(chain, partitions),
    )


def expected_partitions(chain: Sequence[Manifest], partitions: Sequence[int] | None) -> list[Expected]:
    """Per (topic, partition) of the chain, in `partitions` when given: records, bytes, digests."""
    found: dict[tuple[str, int], Expected] = {}
    for manifest in chain:
        for entry in manifest.partitions:
            if partitions is not None and entry.partition not in partitions:
                continue
            where = (entry.topic, entry.partition)
            expected = found.setdefault(
                where, Expected(topic=entry.topic, partition=entry.partition, records=0, bytes=0, digests=[])
            )
            expected.records += entry.record_count
            expected.bytes += entry.byte_count
            if entry.record_count:
                expected.digests.append(entry.records_digest)
    return [found[where] for where in sorted(found)]


def problem_of(error: BaseException) -> str:
    """What failed, in one line naming the object or the topic/partition."""
    if isinstance(error, RestoreFailed):
        error = error.cause
    if isinstance(error, PreflightError):
        more = f" (and {len(error.problems) - 1} more objects)" if len(error.problems) > 1 else ""
        return f"pre-flight ({error.mode}): {error.problems[0]}{more}"
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    return first if isinstance(error, KbackupError) else f"{type(error).__name__}: {first}"


def _partition(expected: Expected, check: PartitionCheck | None, stopped: bool) -> DrillPartition:
    if check is None:
        nothing = expected.records == 0 and not stopped
        return DrillPartition(
            partition=expected.partition,
            expected_records=expected.records,
            restored_records=0 if nothing else None,
            expected_digest=expected.digest,
            restored_digest=None,
            ok=nothing,
            problem=None if nothing else "not read back: the drill stopped before its check",
        )
    problem = check.problem
    if problem is None and check.records != expected.records:
        problem = f"{check.records} records read back, the manifests hold {expected.records}"
    if problem is None and expected.digest and check.digest_compared and check.digest != expected.digest:
        problem = f"records digest {check.digest} differs from the manifest's {expected.digest}"
    return DrillPartition(
        partition=expected.partition,
        expected_records=expected.records,
        restored_records=check.records,
        expected_digest=expected.digest,
        restored_digest=check.digest if check.digest_compared else None,
        ok=check.ok and problem is None,
        problem=problem,
    )


def drill_topics(point: DrillPoint, report: RestoreReport | None, scratch: str) -> list[DrillTopic]:
    """Per topic of the restore point: its scratch topic, records and recovery time (its slowest
    unit: a topic's units restore in parallel), and each partition's check against the manifests."""
    checks = {(c.topic, c.partition): c for c in (report.checks if report else [])}
    stopped = report is None or not report.ok or not report.checks
    units: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for unit in report.units if report else []:
        units[unit.target].append((unit.records, unit.bytes, unit.seconds))
    by_topic: dict[str, list[Expected]] = defaultdict(list)
    for entry in point.partitions:
        by_topic[entry.topic].append(entry)
    topics = []
    for topic, expected in sorted(by_topic.items()):
        target = scratch + topic
        done = [u for name, rows in units.items() if name.split("/", 1)[0] == target for u in rows]
        records = sum(r for r, _, _ in done)
        seconds = max((s for _, _, s in done), default=0.0)
        topics.append(
            DrillTopic(
                topic=topic,
                scratch_topic=target,
                records=records,
                bytes=sum(b for _, b, _ in done),
                seconds=round(seconds, 3),
                records_per_second=round(records / seconds, 1) if seconds else 0.0,
                partitions=tuple(_partition(e, checks.get((target, e.partition)), stopped) for e in expected),
            )
        )
    return topics


def evidence_of(
    *,
    drill_id: str,
    point: DrillPoint,
    scratch: str,
    sample: Sequence[int] | None,
    report: RestoreReport | None,
    failure: BaseException | None,
    started_at: datetime,
    finished_at: datetime,
    seconds: float,
    cluster: str,
    cluster_id: str | None,
    cleanup: DrillCleanup,
) -> DrillEvidence:
    """The drill's evidence: passed when the restore and its check passed and every partition's
    records (and, where one manifest holds them, digest) are the manifests'; else failed, naming
    the first problem."""
    topics = drill_topics(point, report, scratch)
    problem = problem_of(failure) if failure is not None else None
    if problem is None:
        bad = [(t, p) for t in topics for p in t.partitions if not p.ok]
        if bad:
            topic, partition = bad[0]
            problem = f"{topic.topic}/{partition.partition}: {partition.problem}"
    records = sum(t.records for t in topics)
    return DrillEvidence(
        drill_id=drill_id,
        bucket=point.bucket,
        prefix=point.prefix,
        backup_id=point.backup_id,
        manifest_key=point.manifest_key,
        manifest_sha256=point.manifest_sha256,
        started_at=started_at,
        finished_at=finished_at,
        seconds=round(seconds, 3),
        records=records,
        records_per_second=round(records / seconds, 1) if seconds else 0.0,
        cluster=cluster,
        cluster_id=cluster_id,
        scratch_prefix=scratch,
        sample="all" if not sample else "partitions " + ",".join(str(p) for p in sorted(sample)),
        result="failed" if problem else "passed",
        problem=problem,
        topics=tuple(topics),
        cleanup=cleanup,
    )


def topic_rows(evidence: DrillEvidence) -> list[dict[str, str]]:
    """Per topic: records, seconds, records/s, ok and its scratch topic — the command line's table
    (the artifact's leaves the scratch topic to the prefix it states)."""
    return [
        {
            "topic": t.topic,
            "records": str(t.records),
            "seconds": f"{t.seconds:.2f}",
            "records/s": f"{t.records_per_second:.0f}",
            "ok": "ok" if t.ok else "FAILED",
            "scratch topic": t.scratch_topic,
        }
        for t in evidence.topics
    ]


def markdown(evidence: DrillEvidence) -> str:
    """The evidence as the `kbackup-drill` artifact shows it."""
    key = drill_key(evidence.prefix, evidence.drill_id)
    lines = [
        f"# Restore drill {evidence.drill_id}: {evidence.result.upper()}",
        "",
        f"- backup: s3://{evidence.bucket}/{evidence.prefix}, restore point `{evidence.backup_id}`",
        f"- manifest: `{evidence.manifest_key}`, sha256 `{evidence.manifest_sha256}`",
        f"- restored into: {evidence.cluster}"
        + (f" (cluster {evidence.cluster_id})" if evidence.cluster_id else "")
        + f", scratch topics `{evidence.scratch_prefix}*`; sample: {evidence.sample}",
        f"- recovery time: {evidence.seconds:.2f} s for {evidence.records} records "
        f"({evidence.records_per_second:,.0f} records/s)",
        f"- when: {evidence.started_at:%Y-%m-%d %H:%M:%S} to {evidence.finished_at:%H:%M:%S} UTC",
        f"- evidence: `s3://{evidence.bucket}/{key}`",
    ]
    if evidence.problem:
        lines += ["", f"**Problem:** {evidence.problem}"]
    rows = [{k: v for k, v in row.items() if k != "scratch topic"} for row in topic_rows(evidence)]
    lines += ["", "## Topics", "", _markdown_row(list(rows[0]) if rows else ["topic"]), "|---" * 5 + "|"]
    lines += [_markdown_row(list(row.values())) for row in rows]
    lines += [
        "",
        "## Partitions",
        "",
        _markdown_row(
            ["topic", "partition", "records: manifest / read back", "digest: manifest / read back", "ok"]
        ),
        "|---" * 5 + "|",
    ]
    for topic in evidence.topics:
        for p in topic.partitions:
            restored = "—" if p.restored_records is None else str(p.restored_records)
            if p.restored_digest is not None and p.restored_digest == p.expected_digest:
                digests = f"`{_short(p.expected_digest)}` / the same"
            else:
                digests = f"`{_short(p.expected_digest)}` / `{_short(p.restored_digest)}`"
            ok = "ok" if p.ok else f"FAILED: {p.problem or ''}"
            lines.append(
                _markdown_row(
                    [topic.topic, str(p.partition), f"{p.expected_records} / {restored}", digests, ok]
                )
            )
    cleanup = evidence.cleanup
    lines += [
        "",
        "## Clean-up",
        "",
        f"- scratch topics deleted: {len(cleanup.deleted_topics)}; consumer groups deleted: "
        f"{len(cleanup.deleted_groups)}",
        *(f"- not removed: {problem}" for problem in cleanup.problems),
    ]
    return "\n".join(lines)


def _markdown_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _short(digest: str | None) -> str:
    return "—" if not digest else digest.removeprefix("sha256:")[:16]


@task(name="read-restore-point", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def read_point_task(bucket: str, prefix: str, point: str | None, partitions: list[int] | None) -> DrillPoint:
    from tasks.services.object_store import open_store

    return read_point(open_store(), bucket, prefix, point, partitions)
