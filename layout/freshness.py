"""How fresh a backup is, per topic, when it commits: the manifest's `freshness` entries
(layout.manifest.TopicFreshness), from its partitions and the log-end offsets read just before the
manifest is written (tasks/backup/freshness.py). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from layout.manifest import PartitionEntry, TopicFreshness

Where = tuple[str, int]


def newest_record_ms(partitions: Iterable[PartitionEntry]) -> int | None:
    """The newest timestamp among the partitions' objects; None: they hold no record."""
    stamps = [o.max_timestamp for p in partitions for o in p.objects if o.max_timestamp is not None]
    return max(stamps) if stamps else None


def lag_records(partitions: Iterable[PartitionEntry], log_ends: Mapping[Where, int] | None) -> int | None:
    """Records between each partition's end offset and its log end, summed; a log end before the
    end offset (a read under another isolation, a truncated log) counts 0. None: a log end is
    missing."""
    if log_ends is None:
        return None
    total = 0
    for p in partitions:
        end = log_ends.get((p.topic, p.partition))
        if end is None:
            return None
        total += max(0, end - p.end_offset)
    return total


def estimated_lag_bytes(partitions: Sequence[PartitionEntry], lag: int | None) -> int | None:
    """`lag` records times the topic's encoded bytes per record in this backup (an estimate: Kafka
    gives no byte count per offset range); 0 for no lag; None with no record to estimate from."""
    if lag is None:
        return None
    if lag == 0:
        return 0
    records = sum(p.record_count for p in partitions)
    if records == 0:
        return None
    return round(lag * sum(p.byte_count for p in partitions) / records)


def topic_freshness(
    topics: Sequence[str],
    partitions: Sequence[PartitionEntry],
    snapshot_at: datetime,
    measured_at: datetime,
    log_ends: Mapping[Where, int] | None,
) -> tuple[TopicFreshness, ...]:
    """One entry per backed-up topic, in `topics`' order; `log_ends` None: they could not be read
    (the lag is unknown)."""
    by_topic: dict[str, list[PartitionEntry]] = {topic: [] for topic in topics}
    for p in partitions:
        by_topic.setdefault(p.topic, []).append(p)
    entries = []
    for topic, held in by_topic.items():
        lag = lag_records(held, log_ends)
        entries.append(
            TopicFreshness(
                topic=topic,
                snapshot_at=snapshot_at,
                newest_record_ms=newest_record_ms(held),
                measured_at=measured_at,
                lag_records=lag,
                lag_bytes=estimated_lag_bytes(held, lag),
            )
        )
    return tuple(entries)
