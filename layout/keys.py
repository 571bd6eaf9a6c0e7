"""Object keys: how a backup names what it writes, and how a restore reads names back.

Layouts:
- default:     `<prefix>/<topic>/<partition>/<offset>.<ext>` (offset = last offset in the object,
               left-padded to 12 digits); Stream Reactor's `<offset>_<minTs>_<maxTs>.<ext>` is read too.
- PARTITIONBY: `<prefix>/<v1>/<v2>/…/<topic>(<partition>_<offset>).<ext>`,
               with `partition.include.keys`: `<prefix>/<name1>=<v1>/…/<topic>(<partition>_<offset>).<ext>`.
Names are deterministic from the records an object holds, so a retried export rewrites the same keys.

Every value (and field name, and topic) is escaped into one segment reversibly, as Hive's
`FileUtils.escapePathName` does: `%XX` (two upper-case hex digits of the character's code) for
control characters (U+0000–U+001F, U+007F–U+009F) and ``"#%'*/:=?\\{[]^``. Beyond Hive, for what
S3 stores or lists badly: leading and trailing spaces become `%20`, and a value that is `.` or
`..` as a whole becomes `%2E` / `%2E%2E`. Everything else (unicode included) is kept as it is, so
Hive, Spark and Athena read the same values back. Two values have names of their own:
a missing value (`partition.missing`=`null`, or a JSON null) is `null`, the empty value is
`_empty_`; the texts `null` and `_empty_` themselves are written `%6Eull` and `%5Fempty_`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from layout.drills import DRILLS_FOLDER
from layout.manifest import MANIFESTS_FOLDER, join_key

PaddingType = Literal["LeftPad", "RightPad", "NoOp"]
NULL_SEGMENT = "null"  # a missing value
EMPTY_SEGMENT = "_empty_"  # the empty value
# Hive's FileUtils.escapePathName set (it includes `\`), plus the C1 control characters.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\"#%'*/:=?\\{\[\]^]")
_EDGE_SPACES = re.compile(r"^ +| +$")
_ESCAPED = re.compile(r"%([0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class Padding:
    type: PaddingType = "LeftPad"
    char: str = "0"
    lengths: Mapping[str, int] = field(default_factory=lambda: {"offset": 12})

    def pad(self, field_name: str, number: int) -> str:
        text = str(number)
        length = self.lengths.get(field_name)
        if length is None or self.type == "NoOp":
            return text
        return text.rjust(length, self.char) if self.type == "LeftPad" else text.ljust(length, self.char)


@dataclass(frozen=True)
class KeyNaming:
    """Everything needed to name an object, taken from a BackupSpec."""

    prefix: str
    extension: str
    partition_names: tuple[str, ...] = ()
    include_keys: bool = False
    padding: Padding = field(default_factory=Padding)
    key_suffix: str = ""

    @property
    def partitioned(self) -> bool:
        return bool(self.partition_names)

    def object_key(
        self, topic: str, partition: int, last_offset: int, partition_values: Sequence[str | None] = ()
    ) -> str:
        offset = self.padding.pad("offset", last_offset)
        if not self.partitioned:
            name = f"{offset}{self.key_suffix}.{self.extension}"
            return join_key(
                self.prefix, escape_path_name(topic), str(self.padding.pad("partition", partition)), name
            )
        if len(partition_values) != len(self.partition_names):
            raise ValueError(
                f"expected {len(self.partition_names)} partition values, got {len(partition_values)}"
            )
        segments = [
            f"{escape_path_name(name)}={escape_segment(value)}"
            if self.include_keys
            else escape_segment(value)
            for name, value in zip(self.partition_names, partition_values, strict=True)
        ]
        part = self.padding.pad("partition", partition)
        name = f"{escape_path_name(topic)}({part}_{offset}){self.key_suffix}.{self.extension}"
        return join_key(self.prefix, *segments, name)


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{ord(c):02X}" for c in match.group())


def escape_path_name(text: str) -> str:
    """`text` as one key segment that every store keeps and lists as it is (see the module doc)."""
    if text in (".", ".."):
        return "%2E" * len(text)
    return _EDGE_SPACES.sub(_percent, _UNSAFE.sub(_percent, text))


def unescape_path_name(segment: str) -> str:
    """The inverse of escape_path_name (any `%XX` is a character code, as Hive reads it)."""
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), segment)


def escape_segment(value: str | None) -> str:
    """A partition value as one key segment: `null` when missing, `_empty_` when empty, else
    escape_path_name(value) (with the literal texts `null` and `_empty_` kept distinguishable)."""
    if value is None:
        return NULL_SEGMENT
    if value == "":
        return EMPTY_SEGMENT
    escaped = escape_path_name(value)
    if escaped in (NULL_SEGMENT, EMPTY_SEGMENT):
        escaped = f"%{ord(escaped[0]):02X}{escaped[1:]}"
    return escaped


def unescape_segment(segment: str) -> str | None:
    """The partition value a segment written by escape_segment holds."""
    if segment == NULL_SEGMENT:
        return None
    if segment == EMPTY_SEGMENT:
        return ""
    return unescape_path_name(segment)


@dataclass(frozen=True)
class ParsedKey:
    """What an object's key says about it."""

    key: str
    topic: str | None
    partition: int | None
    last_offset: int | None
    extension: str
    partition_values: dict[str, str | None] = field(default_factory=dict)


_PARTITIONED_NAME = re.compile(
    r"^(?P<topic>.+)\((?P<partition>\d+)_(?P<offset>\d+)\)(?P<rest>[^/]*)\.(?P<ext>[A-Za-z0-9]+)$"
)
_DEFAULT_NAME = re.compile(
    r"^(?P<offset>\d+)(?:_(?P<min>-?\d+)_(?P<max>-?\d+))?(?P<rest>[^/.]*)\.(?P<ext>[A-Za-z0-9]+)$"
)


def parse_object_key(key: str, prefix: str = "") -> ParsedKey:
    """Read topic, partition and last offset from a key of either layout; fields the key does not
    carry are None (Stream Reactor's source also reads objects at arbitrary keys)."""
    relative = (
        key[len(prefix.strip("/")) :].lstrip("/") if prefix and key.startswith(prefix.strip("/")) else key
    )
    segments = relative.split("/")
    name = segments[-1]
    extension = name.rsplit(".", 1)[-1] if "." in name else ""
    match = _PARTITIONED_NAME.match(name)
    if match:
        values: dict[str, str | None] = {}
        for index, segment in enumerate(segments[:-1]):
            if "=" in segment:
                field_name, value = segment.split("=", 1)
                values[unescape_path_name(field_name)] = unescape_segment(value)
            else:
                values[f"_{index}"] = unescape_segment(segment)
        return ParsedKey(
            key,
            unescape_path_name(match["topic"]),
            int(match["partition"]),
            int(match["offset"]),
            match["ext"],
            values,
        )
    match = _DEFAULT_NAME.match(name)
    if match and len(segments) >= 3 and segments[-2].isdigit():
        return ParsedKey(
            key, unescape_path_name(segments[-3]), int(segments[-2]), int(match["offset"]), match["ext"]
        )
    return ParsedKey(key, None, None, None, extension)


def is_bookkeeping_key(key: str) -> bool:
    """A key of kbackup's own records under a prefix — the manifests (and their lock) or the restore
    drills' evidence — never an object of a backup: discovery, verification and prune skip them."""
    return f"/{MANIFESTS_FOLDER}/" in f"/{key}" or f"/{DRILLS_FOLDER}/" in f"/{key}"
