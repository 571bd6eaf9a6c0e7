"""Specs back to canonical KCQL, such that parse(render(spec)) == spec."""

from __future__ import annotations

import json

from kcql.specs import BackupSpec, RestoreSpec

_LEGACY = (
    ("WITH_FLUSH_SIZE", "flush_size", 500_000_000),
    ("WITH_FLUSH_INTERVAL", "flush_interval", None),
    ("WITH_FLUSH_COUNT", "flush_count", 50_000),
)


def _name(name: str) -> str:
    return name if name == "*" or name.replace("-", "").replace("_", "").isalnum() else f"`{name}`"


def _value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + value + "'"


def _location(bucket: str, prefix: str) -> str:
    return f"{bucket}:{prefix}" if prefix else bucket


def render(spec: BackupSpec | RestoreSpec) -> str:
    if isinstance(spec, BackupSpec):
        parts = [f"INSERT INTO {_location(spec.bucket, spec.prefix)} SELECT * FROM {_name(spec.topics[0])}"]
        if spec.partition_by:
            parts.append(
                "PARTITIONBY "
                + ", ".join(
                    f"`{f.text}`"
                    if not f.text.replace(".", "").replace("_", "").replace("-", "").isalnum()
                    else f.text
                    for f in spec.partition_by
                )
            )
        parts.append(f"STOREAS {spec.format.value}")
        for clause, name, default in _LEGACY:
            value = getattr(spec, name)
            if value != default and f"flush.{clause.rsplit('_', 1)[1].lower()}" not in spec.properties:
                parts.append(f"{clause} = {value}")
    else:
        parts = [
            f"INSERT INTO {_name(spec.target_topic)} SELECT * FROM {_location(spec.bucket, spec.prefix)}"
        ]
        if spec.format:
            parts.append(f"STOREAS {spec.format.value}")
        if spec.batch_limit:
            parts.append(f"LIMIT {spec.batch_limit}")
    if spec.properties:
        parts.append(
            "PROPERTIES(" + ", ".join(f"'{k}'={_value(v)}" for k, v in spec.properties.items()) + ")"
        )
    return " ".join(parts)


def spec_json(spec: BackupSpec | RestoreSpec) -> str:
    return json.dumps(
        {"kind": "backup" if isinstance(spec, BackupSpec) else "restore", **spec.model_dump(mode="json")}
    )
