"""Backups made in memory, for unit tests of what reads a bucket (verification, prune, restore
planning): the backup's own export (tasks.backup.export.export_unit — grouping, the roller,
the codecs, the upload once and the resume) and manifest (tasks.backup.manifest) write into a
MemoryStore; only the Kafka reads are replaced, by the messages given here. The partitions are
exported in work units as the flow packs them (tasks.backup.export.export_units)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from formats import get_codec
from kcql import BackupSpec, parse_backup
from layout.chains import chain_suffix
from layout.manifest import Manifest, PartitionEntry, TopicEntry, new_backup_id
from layout.spec_bridge import key_naming
from tasks.backup.export import export_unit, export_units
from tasks.backup.manifest import build_manifest
from tasks.backup.plan import BackupPlan
from tasks.backup.upload import earlier_keys
from tasks.services.kafka.admin import PartitionWindow
from tasks.services.kafka.reader import WindowRun
from tasks.services.manifest_store import write_manifest
from tasks.services.object_store import ObjectStore

T0 = 1_700_000_000_000  # the timestamp of offset 0; offset n is stamped T0 + n


@dataclass(frozen=True)
class Message:
    """What the export reads of a confluent-kafka Message."""

    at: int
    k: bytes | None
    v: bytes | None
    ts: int
    h: tuple[tuple[str, bytes | None], ...] = field(default=())

    def offset(self) -> int:
        return self.at

    def key(self) -> bytes | None:
        return self.k

    def value(self) -> bytes | None:
        return self.v

    def headers(self) -> list[tuple[str, bytes | None]]:
        return list(self.h)

    def timestamp(self) -> tuple[int, int]:
        return 1, self.ts  # CREATE_TIME


def messages(offsets: Sequence[int] | range, tag: str = "") -> list[Message]:
    """One message at each offset: key `k<offset>`, value `v<offset><tag>`, a header, stamped T0 + offset."""
    return [
        Message(o, f"k{o}".encode(), f"v{o}{tag}".encode(), T0 + o, (("h", f"{o}".encode()),))
        for o in offsets
    ]


class Partitions:
    """A topic's partitions as the export reads them: `read_window` is tasks.services.kafka.reader's,
    a consumed batch (of at most `batch` messages) at a time."""

    def __init__(self, topic: str, by_partition: Mapping[int, Sequence[Message]], batch: int = 7) -> None:
        self.topic = topic
        self.by_partition = {p: sorted(m, key=lambda m: m.at) for p, m in by_partition.items()}
        self.batch = batch
        self.reads: list[tuple[int, int, int]] = []  # (partition, start, end) of every read

    def read_window(
        self, config: Any, topic: str, partition: int, start: int, end: int, *_: Any
    ) -> Iterator[list[Message]]:
        assert topic == self.topic, topic
        self.reads.append((partition, start, end))
        window = [m for m in self.by_partition[partition] if start <= m.at < end]
        for index in range(0, len(window), self.batch):
            yield window[index : index + self.batch]

    def read_windows(
        self, config: Any, windows: Sequence[PartitionWindow], *_: Any, **__: Any
    ) -> Iterator[WindowRun]:
        """tasks.services.kafka.reader's `read_windows`: the windows' batches interleaved, a batch of
        each in turn, each window's last run marked."""
        reads = [(w, list(self.read_window(None, w.topic, w.partition, w.start, w.end))) for w in windows]
        for round_ in range(max((len(batches) for _, batches in reads), default=0) + 1):
            for window, batches in reads:
                if round_ < len(batches):
                    yield WindowRun(
                        window.topic, window.partition, batches[round_], round_ == len(batches) - 1
                    )
                elif round_ == len(batches) == 0:
                    yield WindowRun(window.topic, window.partition, [], True)

    def windows(self, previous: Manifest | None) -> tuple[PartitionWindow, ...]:
        """Each partition from where `previous` ended (else its first message) to its last."""
        ends = {p.partition: p.end_offset for p in previous.partitions} if previous else {}
        return tuple(
            PartitionWindow(
                topic=self.topic,
                partition=p,
                start=ends.get(p, m[0].at if m else 0),
                end=(m[-1].at + 1) if m else ends.get(p, 0),
            )
            for p, m in sorted(self.by_partition.items())
        )


def spec_of(kcql: str) -> BackupSpec:
    [spec] = parse_backup(kcql)
    return spec


def plan_of(
    spec: BackupSpec,
    source: Partitions,
    previous: Manifest | None = None,
    at: datetime | None = None,
    full_after: Manifest | None = None,
) -> BackupPlan:
    """The plan `plan_backup` would make: an incremental continuing `previous`, or (`full_after`:
    the prefix's newest backup) a full backup starting a new chain, named apart from it."""
    backup_id = new_backup_id(at or datetime.now(UTC))
    return BackupPlan(
        spec=spec,
        backup_id=backup_id,
        previous_backup_id=previous.backup_id if previous else None,
        chain_id=(previous.chain_id or previous.backup_id) if previous else backup_id,
        chain_suffix=previous.chain_suffix if previous else (chain_suffix(backup_id) if full_after else ""),
        started_at=at or datetime.now(UTC),
        cluster_id=None,
        topics=(
            TopicEntry(name=source.topic, partition_count=len(source.by_partition), replication_factor=1),
        ),
        windows=source.windows(previous),
        consumer_groups=(),
    )


def export(
    store: ObjectStore, plan: BackupPlan, source: Partitions, workers: int = 2, listed_once: bool = True
) -> list[PartitionEntry]:
    """Every partition's export, as the backup flow runs them (without the retries): in the work
    units `export_units` packs for `workers`, given what earlier attempts left from one listing
    per topic (`listed_once`; else each partition looks in its own folder, as a retried task does)."""
    naming = key_naming(plan.spec, get_codec(plan.spec.format.value).spec.extension, plan.chain_suffix)
    earlier = earlier_keys(store, plan.spec.bucket, naming, plan.windows) if listed_once else None
    with mock.patch("tasks.backup.export.read_windows", source.read_windows):
        units = export_units(plan, workers, earlier)
        return [entry for unit in units for entry in export_unit(unit, {}, store)]


def backup(
    store: ObjectStore,
    kcql: str,
    source: Partitions,
    previous: Manifest | None = None,
    at: datetime | None = None,
    full_after: Manifest | None = None,
) -> Manifest:
    """A whole backup committed into the store: its objects, then its manifest."""
    spec = spec_of(kcql)
    plan = plan_of(spec, source, previous, at, full_after)
    extension = get_codec(spec.format.value).spec.extension
    manifest = build_manifest(plan, export(store, plan, source), extension)
    write_manifest(store, spec.bucket, spec.prefix, manifest)
    return manifest
