"""Selection: what a restore reads and where it writes — its one statement plus the overrides a
run gives (the command line's flags, the restore flow's parameters), parsed once and built here
into the `Selection` that discovery and the restore take.

The overrides follow the grammar of the properties they override (kcql/properties.py:
`restore_bound`, `partition_list`, `restore_filter` — one implementation for both): an error in
the statement names its line and column (KcqlError), an error in an override names the flag or
parameter it came from (OverrideError). Pure: imports neither Prefect nor any service client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from core.models import FrozenModel
from kcql.errors import KcqlValueError
from kcql.parser import parse_restore
from kcql.properties import PropertyProblem, partition_list, restore_acls, restore_bound, restore_filter
from kcql.properties import topic_prefix as topic_prefix_grammar
from kcql.specs import Converter, RestoreBound, RestoreSpec

T = TypeVar("T")
Preflight = Literal["quick", "full", "none"]
TargetNonEmpty = Literal["refuse", "append"]
TimestampZero = Literal["refuse", "substitute"]
AccessMode = Literal["off", "literal", "all"]
DEFAULT_BATCH = 10_000


class Window(FrozenModel):
    """Which records of a source partition are selected: [from, to) by timestamp and/or offset."""

    from_timestamp: int | None = None
    to_timestamp: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None

    @classmethod
    def between(cls, start: RestoreBound | None, end: RestoreBound | None) -> Window:
        """The window from `restore.from` (inclusive) to `restore.to` (exclusive)."""
        return cls(
            from_timestamp=start.timestamp_ms if start else None,
            to_timestamp=end.timestamp_ms if end else None,
            from_offset=start.offset if start else None,
            to_offset=end.offset if end else None,
        )

    @property
    def active(self) -> bool:
        return any(
            v is not None for v in (self.from_timestamp, self.to_timestamp, self.from_offset, self.to_offset)
        )

    def admits(self, offset: int | None, timestamp: int | None) -> bool:
        if offset is not None:
            if self.from_offset is not None and offset < self.from_offset:
                return False
            if self.to_offset is not None and offset >= self.to_offset:
                return False
        if self.from_timestamp is not None or self.to_timestamp is not None:
            if timestamp is None:
                return False
            if self.from_timestamp is not None and timestamp < self.from_timestamp:
                return False
            if self.to_timestamp is not None and timestamp >= self.to_timestamp:
                return False
        return True

    def may_hold(self, first: int | None, last: int | None, min_ts: int | None, max_ts: int | None) -> bool:
        """Can an object with these bounds hold a selected record? (False skips it unread.)"""
        if first is not None and last is not None:
            if self.from_offset is not None and last < self.from_offset:
                return False
            if self.to_offset is not None and first >= self.to_offset:
                return False
        if min_ts is not None and max_ts is not None:
            if self.from_timestamp is not None and max_ts < self.from_timestamp:
                return False
            if self.to_timestamp is not None and min_ts >= self.to_timestamp:
                return False
        return True


class Selection(FrozenModel):
    """The restore's choices: its statement's spec with the run's overrides applied.

    Its fields (but batch, preflight, target_nonempty, timestamp_zero, acls and users, and topic_prefix
    when empty) are hashed into the restore's id
    (layout.restore.plan.restore_id), which names its transactional ids: renaming or adding a
    field changes the id of every restore, and a rerun would no longer resume."""

    target_topic: str
    bucket: str
    prefix: str
    format: str | None = None
    envelope: bool | None = None
    envelope_parts: tuple[bool, bool, bool, bool] = (True, True, True, True)
    key_converter: Converter = "bytes"
    value_converter: Converter = "bytes"
    source_topic: str | None = None
    window: Window = Window()
    partitions: tuple[int, ...] | None = None
    filter: tuple[tuple[str, str], ...] = ()
    partitioner: str = "preserve"
    batch: int = DEFAULT_BATCH
    group_prefix: str = ""
    topic_prefix: str = ""
    translate_groups: bool = True
    preflight: Preflight = "quick"
    target_nonempty: TargetNonEmpty = "refuse"
    timestamp_zero: TimestampZero = "refuse"
    schema_ids: Literal["rewrite", "keep"] = "rewrite"
    schema_registry_url: str | None = None
    point: str | None = None
    acls: AccessMode = "off"
    users: bool = False


class OverrideError(KcqlValueError):
    """An override's value is not valid: `name` is the flag or parameter that gave it, `value` the
    text, `expected` what would be valid."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        self.name = name
        self.value = value
        super().__init__(value, 0, expected, repr(value))

    def render(self) -> str:
        return f"{self.name}: expected {self.expected}, found {self.found}"


def parse_override(name: str, value: str, parse: Callable[[str], T]) -> T:
    """`value` parsed by one of the properties' grammars; OverrideError naming `name` if invalid."""
    try:
        return parse(value)
    except PropertyProblem as problem:
        raise OverrideError(name, value, problem.expected) from None


def restore_selection(
    kcql: str,
    *,
    target: str | None = None,
    restore_from: str | None = None,
    restore_to: str | None = None,
    partitions: str | Sequence[int] | None = None,
    filter: str | None = None,  # noqa: A002 - the property's name
    point: str | None = None,
    group_prefix: str | None = None,
    topic_prefix: str | None = None,
    translate_groups: bool = True,
    acls: str | None = None,
    users: bool = False,
    names: Mapping[str, str] | None = None,
) -> Selection:
    """The statement's selection with the overrides that are set (not None, not empty) applied.
    `names` maps an override (`restore_from`, …) to what the user calls it (`--from`) for errors;
    without it, errors use the keyword's own name."""
    specs = parse_restore(kcql)
    if len(specs) != 1:
        raise ValueError(f"a restore takes exactly one statement, got {len(specs)}")
    [spec] = specs

    def named(keyword: str) -> str:
        return (names or {}).get(keyword, keyword)

    update: dict[str, Any] = {}
    if target:
        update["target_topic"] = target
    if restore_from:
        update["restore_from"] = parse_override(named("restore_from"), restore_from, restore_bound)
    if restore_to:
        update["restore_to"] = parse_override(named("restore_to"), restore_to, restore_bound)
    if isinstance(partitions, str) and partitions.strip():
        update["partitions"] = parse_override(named("partitions"), partitions, partition_list)
    elif partitions and not isinstance(partitions, str):
        update["partitions"] = tuple(partitions)
    if filter:
        update["filter"] = parse_override(named("filter"), filter, restore_filter)
    if point:
        update["point"] = point
    if acls:
        update["acls"] = parse_override(named("acls"), acls, restore_acls)
    if users:  # an override only turns it on: off is the statement's default
        update["users"] = True
    if topic_prefix:
        topic_prefix = parse_override(named("topic_prefix"), topic_prefix, topic_prefix_grammar)
    return _selection(
        spec.model_copy(update=update) if update else spec,
        group_prefix=group_prefix or str(spec.properties.get("restore.group.prefix", "") or ""),
        topic_prefix=topic_prefix or str(spec.properties.get("restore.topic.prefix", "") or ""),
        translate_groups=translate_groups,
    )


def _selection(
    spec: RestoreSpec, *, group_prefix: str, topic_prefix: str, translate_groups: bool
) -> Selection:
    envelope = spec.envelope
    return Selection(
        target_topic=spec.target_topic,
        bucket=spec.bucket,
        prefix=spec.prefix or "",
        format=spec.format.value if spec.format is not None else None,
        envelope=envelope.enabled,
        envelope_parts=(envelope.key, envelope.value, envelope.headers, envelope.metadata),
        key_converter=spec.key_converter or "bytes",
        value_converter=spec.value_converter or "bytes",
        source_topic=spec.source_topic,
        window=Window.between(spec.restore_from, spec.restore_to),
        preflight=spec.preflight or "quick",
        target_nonempty=spec.target_nonempty or "refuse",
        timestamp_zero=spec.timestamp_zero,
        schema_ids=spec.schema_ids,
        schema_registry_url=spec.schema_registry_url,
        point=spec.point,
        acls=spec.acls,
        users=spec.users,
        partitions=spec.partitions or None,
        filter=spec.filter,
        partitioner=spec.partitioner or "preserve",
        batch=spec.batch_limit or DEFAULT_BATCH,
        group_prefix=group_prefix,
        topic_prefix=topic_prefix,
        translate_groups=translate_groups,
    )
