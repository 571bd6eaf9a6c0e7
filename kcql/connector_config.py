"""Kafka Connect `.properties` input: a Stream Reactor S3 sink config → BackupSpecs + transforms."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, ValidationError

from kcql.errors import KcqlError, KcqlValueError, suggestion
from kcql.java_dates import JavaPatternError, pattern_parts
from kcql.parser import parse_backup
from kcql.specs import BackupSpec
from kcql.transforms import (
    INSERT_WALLCLOCK,
    TIMESTAMP_CONVERTER,
    InsertWallclockTransform,
    TimestampConverterTransform,
    Transform,
)

CONVERTER_CLASSES = {
    "org.apache.kafka.connect.storage.StringConverter": "string",
    "org.apache.kafka.connect.json.JsonConverter": "json",
    "org.apache.kafka.connect.converters.ByteArrayConverter": "bytes",
    "io.confluent.connect.avro.AvroConverter": "avro",
}
IGNORED_KEYS = (
    "name",
    "connector.class",
    "tasks.max",
    "topics.regex",
    "errors.tolerance",
    "errors.log.enable",
)
IGNORED_PREFIXES = (
    "connect.s3.aws.",
    "connect.s3.",
    "errors.",
    "key.converter.",
    "value.converter.",
    "consumer.override.",
    "header.converter",
)
_SMT_SETTINGS = {
    TIMESTAMP_CONVERTER: {
        "header.name": "header_name",
        "field": "field",
        "target.type": "target_type",
        "format.to.pattern": "format_to_pattern",
        "format.from.pattern": "format_from_pattern",
        "unix.precision": "unix_precision",
        "timezone": "timezone",
    },
    INSERT_WALLCLOCK: {
        "header.name": "header_name",
        "value.type": "value_type",
        "format": "format",
        "timezone": "timezone",
    },
}


class ConnectorConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    specs: tuple[BackupSpec, ...]
    topics: tuple[str, ...]
    transforms: tuple[Transform, ...] = ()


def _properties(text: str) -> dict[str, tuple[str, int]]:
    """key → (value, line number); `#`/`!` comments, `=` or `:` separators, `\\` continuations."""
    result: dict[str, tuple[str, int]] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        number = i + 1
        line = lines[i].strip()
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + lines[i].strip()
        i += 1
        if not line or line[0] in "#!":
            continue
        cut = min((line.find(c) for c in "=:" if c in line), default=-1)
        if cut <= 0:
            raise KcqlValueError(text, _offset(text, number), "key=value", repr(line[:40]))
        result[line[:cut].strip()] = (line[cut + 1 :].strip(), number)
    return result


def _offset(text: str, line: int) -> int:
    return sum(len(row) + 1 for row in text.splitlines()[: line - 1])


def _fail(text: str, line: int, expected: str, found: str, hint: str = "") -> KcqlValueError:
    return KcqlValueError(text, _offset(text, line), expected, found, hint)


def parse_connector_config(text: str) -> ConnectorConfig:
    props = _properties(text)
    if "connect.s3.kcql" not in props:
        raise _fail(text, 1, "a connect.s3.kcql property", "none")
    converters: dict[str, Any] = {}
    for side in ("key", "value"):
        if f"{side}.converter" in props:
            cls, line = props[f"{side}.converter"]
            if cls not in CONVERTER_CLASSES:
                raise _fail(
                    text,
                    line,
                    f"a supported {side}.converter class",
                    repr(cls),
                    suggestion(cls, CONVERTER_CLASSES),
                )
            converters[f"{side}_converter"] = CONVERTER_CLASSES[cls]
    registry = _registry_url(text, props)
    if registry is not None:
        converters["schema_registry_url"] = registry
    transforms = _transforms(text, props)
    known = {"connect.s3.kcql", "topics", "key.converter", "value.converter", "transforms"}
    for key, (_, line) in props.items():
        if (
            key in known
            or key.startswith("transforms.")
            or key in IGNORED_KEYS
            or key.startswith(IGNORED_PREFIXES)
        ):
            continue
        raise _fail(text, line, "a supported connector setting", repr(key), suggestion(key, sorted(known)))
    kcql_text, kcql_line = props["connect.s3.kcql"]
    try:
        specs = parse_backup(kcql_text)
    except KcqlError as exc:
        raise KcqlValueError(
            text,
            _offset(text, kcql_line) + text.splitlines()[kcql_line - 1].find(kcql_text[:10]) + exc.offset,
            exc.expected,
            exc.found,
            f"in connect.s3.kcql: {exc.hint}".rstrip(": "),
        ) from None
    specs = [
        spec.model_copy(
            update={k: v for k, v in converters.items() if _property_name(k) not in spec.properties}
        )
        for spec in specs
    ]
    topics = tuple(t.strip() for t in props.get("topics", ("", 0))[0].split(",") if t.strip())
    return ConnectorConfig(specs=tuple(specs), topics=topics, transforms=tuple(transforms))


def _property_name(field: str) -> str:
    """The KCQL property that sets a spec field the connector config also sets."""
    return "schema.registry.url" if field == "schema_registry_url" else field.replace("_", ".")


def _registry_url(text: str, props: dict[str, tuple[str, int]]) -> str | None:
    """`key.converter.schema.registry.url` / `value.converter.schema.registry.url` (one registry:
    two different URLs are refused). Registry credentials stay out of the config, which is kept
    in the manifest: `*.basic.auth.user.info` is refused with where to put it instead."""
    urls: dict[str, int] = {}
    for side in ("key", "value"):
        if f"{side}.converter.basic.auth.user.info" in props:
            secret, line = props[f"{side}.converter.basic.auth.user.info"]
            raise _fail(
                text.replace(secret, "***") if secret else text,
                line,
                "no registry credentials in the connector config",
                f"{side}.converter.basic.auth.user.info",
                "set KBACKUP_SCHEMA_REGISTRY_USER_INFO=user:password in the environment instead",
            )
        if f"{side}.converter.schema.registry.url" in props:
            url, line = props[f"{side}.converter.schema.registry.url"]
            urls.setdefault(url, line)
    if len(urls) > 1:
        url, line = list(urls.items())[1]
        raise _fail(text, line, "the same schema registry URL for keys and values", repr(url))
    return next(iter(urls), None)


def _transforms(text: str, props: dict[str, tuple[str, int]]) -> list[Transform]:
    names = [n.strip() for n in props.get("transforms", ("", 0))[0].split(",") if n.strip()]
    result: list[Transform] = []
    for name in names:
        if f"transforms.{name}.type" not in props:
            raise _fail(text, props["transforms"][1], f"a transforms.{name}.type setting", "none")
        cls, line = props[f"transforms.{name}.type"]
        if cls not in _SMT_SETTINGS:
            raise _fail(text, line, "a supported transform class", repr(cls), suggestion(cls, _SMT_SETTINGS))
        settings: dict[str, Any] = {"name": name}
        for key, (value, key_line) in props.items():
            prefix = f"transforms.{name}."
            if not key.startswith(prefix) or key == f"{prefix}type":
                continue
            setting = key[len(prefix) :]
            if setting not in _SMT_SETTINGS[cls]:
                raise _fail(
                    text,
                    key_line,
                    f"a {cls.rsplit('.', 1)[1]} setting",
                    repr(key),
                    suggestion(setting, _SMT_SETTINGS[cls]),
                )
            field = _SMT_SETTINGS[cls][setting]
            settings[field] = (
                value.lower() if field in ("target_type", "unix_precision", "value_type") else value
            )
            if field == "timezone" and not _known_zone(value):
                raise _fail(text, key_line, "an IANA time zone such as UTC or Europe/Amsterdam", repr(value))
            if field in ("format_to_pattern", "format", "format_from_pattern"):
                try:
                    pattern_parts(value)
                except JavaPatternError as exc:
                    raise _fail(text, key_line, "a Java date pattern", repr(value), str(exc)) from None
        try:
            model = TimestampConverterTransform if cls == TIMESTAMP_CONVERTER else InsertWallclockTransform
            result.append(model(**settings))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise _fail(
                text, line, f"valid settings for transform {name!r}", f"{first['loc'][0]}: {first['msg']}"
            ) from None
    for key, (_, line) in props.items():
        if key.startswith("transforms.") and key.split(".")[1] not in names:
            raise _fail(text, line, "a setting of a transform listed in 'transforms'", repr(key))
    return result


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
