"""A run's progress and its per-partition tables at a glance, whatever the partition count.

Pure functions over what tasks.runtime.progress reads: `overview` turns every partition's progress
into totals (partitions done, running and waiting; records, bytes, rate, ETA) and the few
partitions most worth a look — the slowest running ones and the largest — so that the command
line's displays and the Prefect progress artifact draw a fixed number of rows for 3 or 3,000
partitions. `condensed` does the same for a report's table with a row per partition: per-topic
totals and the rows worth a look, with how many were left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.sizes import human_bytes as human_bytes  # where the tables of this layer take it from
from tasks.runtime.progress import PartitionProgress

Key = tuple[str, int]

ROWS = 5  # partitions named besides the totals
MANY_ROWS = 20  # a report's table with more rows than this is condensed
TOP_ROWS = 10  # rows a condensed table keeps


def eta(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def is_done(part: PartitionProgress) -> bool:
    return bool(part.total) and part.records >= part.total


@dataclass(frozen=True)
class Overview:
    partitions: int
    done: int
    running: int  # some records and not done
    waiting: int  # no record yet
    records: int
    total: int
    bytes: int
    rate: float | None  # records a second over the interval measured, None without one
    slowest: tuple[Key, ...]  # running partitions, the longest remaining (or least done) first
    largest: tuple[Key, ...]  # every partition, the most records to read first
    rates: Mapping[Key, float]  # per partition, over the interval measured

    shares: Mapping[Key, float]  # the named partitions' share done, 0 to 1

    def done_share(self, key: Key) -> float:
        return self.shares.get(key, 0.0)

    @property
    def eta_s(self) -> float | None:
        if not self.rate or not self.total:
            return None
        return max(0, self.total - self.records) / self.rate

    def describe(self) -> str:
        """One line: `12/3000 partitions done, 40 running, 2948 waiting; 1200/40000 records (3 %), 1.2 MB, 50 records/s, ETA 13:20`."""
        share = f" ({100 * self.records / self.total:.0f} %)" if self.total else ""
        text = (
            f"{self.done}/{self.partitions} partitions done, {self.running} running, {self.waiting} waiting; "
            f"{self.records}/{self.total} records{share}, {human_bytes(self.bytes)}"
        )
        if self.rate is None:
            return text
        return f"{text}, {self.rate:,.0f} records/s, ETA {eta(self.eta_s)}"


def _remaining(part: PartitionProgress, rate: float | None) -> float:
    """How long a running partition still takes; without a rate, the share left (0 to 1)."""
    left = max(0, part.total - part.records)
    if rate is None:
        return left / part.total if part.total else 1.0
    return left / rate if rate > 0 else math.inf


def overview(
    parts: Mapping[Key, PartitionProgress],
    before: Mapping[Key, PartitionProgress] | None = None,
    seconds: float = 0.0,
    rows: int = ROWS,
) -> Overview:
    """The totals of `parts` and the `rows` slowest and largest partitions. With an earlier
    snapshot `before` taken `seconds` ago, rates and ETAs too, and "slowest" means the longest
    remaining at its rate; without one, the least done."""
    measured = before is not None and seconds > 0
    rates: dict[Key, float] = {}
    if measured:
        assert before is not None
        for key, part in parts.items():
            rates[key] = max(0, part.records - before.get(key, PartitionProgress()).records) / seconds
    running = [k for k, p in parts.items() if p.records > 0 and not is_done(p)]
    done = sum(1 for p in parts.values() if is_done(p))
    slowest = sorted(
        running,
        key=lambda k: (-_remaining(parts[k], rates.get(k) if measured else None), k),
    )[:rows]
    largest = sorted(parts, key=lambda k: (-parts[k].total, -parts[k].bytes, k))[:rows]
    return Overview(
        partitions=len(parts),
        done=done,
        running=len(running),
        waiting=len(parts) - done - len(running),
        records=sum(p.records for p in parts.values()),
        total=sum(p.total for p in parts.values()),
        bytes=sum(p.bytes for p in parts.values()),
        rate=sum(rates.values()) if measured else None,
        slowest=tuple(slowest),
        largest=tuple(largest),
        rates=rates,
        shares={k: parts[k].records / parts[k].total for k in {*slowest, *largest} if parts[k].total},
    )


# --- a report's table with a row per partition -----------------------------------------------


@dataclass(frozen=True)
class Condensed:
    """A long table condensed: per-topic totals, the rows worth a look, how many were left out."""

    topics: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    left_out: int
    of: int


def condensed(
    rows: Sequence[dict[str, Any]],
    *,
    topic: Callable[[dict[str, Any]], str],
    sums: Sequence[str],
    largest: str,
    slowest: str | None = None,
    first: Callable[[dict[str, Any]], bool] | None = None,
    keep: int = TOP_ROWS,
) -> Condensed | None:
    """None when `rows` is short (MANY_ROWS or fewer); else per-topic totals of the columns `sums`
    and at most `keep` rows: those `first` picks (failures), then the slowest by column `slowest`
    and the largest by column `largest`, alternately, in the table's order."""
    if len(rows) <= MANY_ROWS:
        return None
    topics: dict[str, dict[str, Any]] = {}
    for row in rows:
        name = topic(row)
        totals = topics.setdefault(name, {"topic": name, "partitions": 0, **dict.fromkeys(sums, 0)})
        totals["partitions"] += 1
        for column in sums:
            totals[column] += _number(row.get(column))
    for totals in topics.values():
        for column in sums:
            if isinstance(totals[column], float):
                totals[column] = round(totals[column], 3)
    picked: list[int] = [i for i, row in enumerate(rows) if first and first(row)][:keep]
    by_size = sorted(range(len(rows)), key=lambda i: -_number(rows[i].get(largest)))
    by_time = sorted(range(len(rows)), key=lambda i: -_number(rows[i].get(slowest))) if slowest else []
    for index in (i for pair in zip(by_time, by_size, strict=False) for i in pair) if by_time else by_size:
        if len(picked) >= keep:
            break
        if index not in picked:
            picked.append(index)
    return Condensed(
        topics=list(topics.values()),
        rows=[rows[i] for i in sorted(picked)],
        left_out=len(rows) - len(picked),
        of=len(rows),
    )


def _number(value: Any) -> float:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0
