"""Work units: partitions packed into the units one Prefect task run works on, so that the number
of task runs grows with the data and the workers, not with the partition count.

A backup exports, a restore produces and a check reads many partitions in one unit: one
consumer or one transactional producer per unit instead of one per partition. What a unit
holds never changes what is written: object keys, object bytes, manifests and digests are per
partition whatever the grouping (tests/integration prove it for the backup).

Packing (`pack`): the parts (a partition's work with its estimated size) are kept in
(topic, partition) order and cut into contiguous runs of about equal cost, as many as the
larger of the worker count (so every worker has work) and the total cost over the unit's budget
(so no unit grows without bound). A part larger than the budget is a unit of its own; a later
change may split such a part by offset range (a `Part` is already a range of offsets).

Units are named by topic and partition ranges, `orders[0-149]` or `orders[0-3,7] payments[0-2]`,
so that the flow run's graph stays readable at thousands of partitions. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Generic, TypeVar

RECORD_COST_BYTES = 256  # what a record costs beyond its bytes (decode, produce, digest), in bytes
UNIT_BUDGET_BYTES = 256 * 1024 * 1024  # the cost one unit holds before another is started
NAME_TOPICS = 3  # topics named in a unit's name before "+N topics"

T = TypeVar("T")


@dataclass(frozen=True)
class Part:
    """One partition's work: its records from `start` to `end` (exclusive; offsets, or positions
    when unknown) and their estimated bytes (0 when unknown)."""

    topic: str
    partition: int
    records: int
    bytes: int = 0

    @property
    def cost(self) -> int:
        return self.bytes + self.records * RECORD_COST_BYTES


@dataclass(frozen=True)
class WorkUnit(Generic[T]):
    """The items of one task run, in (topic, partition) order, and its name."""

    items: tuple[T, ...]
    name: str
    cost: int


def pack(
    items: Sequence[T],
    part_of: Callable[[T], Part],
    *,
    workers: int,
    budget: int = UNIT_BUDGET_BYTES,
) -> list[WorkUnit[T]]:
    """`items` packed into units (see the module's docstring); every item is in exactly one unit,
    in (topic, partition) order across the units."""
    if not items:
        return []
    ordered = sorted(items, key=lambda i: (part_of(i).topic, part_of(i).partition))
    costs = [max(1, part_of(i).cost) for i in ordered]
    total = sum(costs)
    count = min(len(ordered), max(1, workers, math.ceil(total / max(1, budget))))
    target = total / count
    # Each part goes to the unit its cost's midpoint falls in: contiguous units of about `target`.
    units: list[list[int]] = [[] for _ in range(count)]
    before = 0
    for index, cost in enumerate(costs):
        units[min(count - 1, int((before + cost / 2) // target))].append(index)
        before += cost
    units = [piece for unit in units if unit for piece in _within_budget(unit, costs, budget)]
    while len(units) < count:  # a big part took several units' share: split the costliest
        splittable = [u for u in units if len(u) > 1]
        if not splittable:
            break
        unit = max(splittable, key=lambda u: sum(costs[i] for i in u))
        at = units.index(unit)
        units[at : at + 1] = _halves(unit, costs)
    return [
        WorkUnit(
            items=tuple(ordered[i] for i in unit),
            name=unit_name([part_of(ordered[i]) for i in unit]),
            cost=sum(costs[i] for i in unit),
        )
        for unit in units
    ]


def _within_budget(unit: list[int], costs: Sequence[int], budget: int) -> list[list[int]]:
    """The unit cut where it would grow past the budget; a part over it alone is a unit."""
    pieces: list[list[int]] = [[]]
    held = 0
    for index in unit:
        if pieces[-1] and held + costs[index] > budget:
            pieces.append([])
            held = 0
        pieces[-1].append(index)
        held += costs[index]
    return pieces


def _halves(unit: list[int], costs: Sequence[int]) -> list[list[int]]:
    """The unit in two contiguous halves of about equal cost, neither empty."""
    total, held = sum(costs[i] for i in unit), 0
    for position, index in enumerate(unit[:-1]):
        held += costs[index]
        if held * 2 >= total:
            return [unit[: position + 1], unit[position + 1 :]]
    return [unit[:-1], unit[-1:]]


def partition_ranges(partitions: Sequence[int]) -> str:
    """`0-3,7,9-10` of sorted distinct partitions."""
    runs: list[str] = []
    values = sorted(set(partitions))
    for _, run in groupby(enumerate(values), key=lambda pair: pair[1] - pair[0]):
        members = [value for _, value in run]
        runs.append(str(members[0]) if len(members) == 1 else f"{members[0]}-{members[-1]}")
    return ",".join(runs)


def unit_name(parts: Sequence[Part]) -> str:
    """`orders[0-149]`, `orders[0-3,7] payments[0-2]`, and `+N topics` past NAME_TOPICS topics."""
    by_topic: dict[str, list[int]] = {}
    for part in parts:
        by_topic.setdefault(part.topic, []).append(part.partition)
    named = [f"{topic}[{partition_ranges(ps)}]" for topic, ps in list(by_topic.items())[:NAME_TOPICS]]
    more = len(by_topic) - NAME_TOPICS
    return " ".join(named) + (f" +{more} topics" if more > 0 else "")
