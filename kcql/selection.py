"""Selection: what a restore reads and where it writes — its one statement plus the overrides a
run gives (the command line's flags, the restore flow's parameters), parsed once.

The overrides follow the grammar of the properties they override (kcql/properties.py:
`restore_bound`, `partition_list`, `restore_filter` — one implementation for both): an error in
the statement names its line and column (KcqlError), an error in an override names the flag or
parameter it came from (OverrideError). Pure: imports neither Prefect nor any service client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from kcql.errors import KcqlValueError
from kcql.parser import parse_restore
from kcql.properties import PropertyProblem, partition_list, restore_bound, restore_filter
from kcql.specs import RestoreSpec

T = TypeVar("T")


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
    names: Mapping[str, str] | None = None,
) -> RestoreSpec:
    """The statement's spec with the overrides that are set (not None, not empty) applied.
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
    return spec.model_copy(update=update) if update else spec
