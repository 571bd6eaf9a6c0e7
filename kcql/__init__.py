"""KCQL: the language of Stream Reactor's S3 connectors → frozen BackupSpec / RestoreSpec models.

Pure: imports neither Prefect nor any service client.
"""

from kcql.connector_config import ConnectorConfig, parse_connector_config
from kcql.errors import KcqlError, KcqlSyntaxError, KcqlValueError
from kcql.parser import parse_backup, parse_restore
from kcql.render import render, spec_json
from kcql.specs import (
    BackupSpec,
    CodecOptions,
    EnvelopeOptions,
    Format,
    PaddingOptions,
    PartitionField,
    RestoreBound,
    RestoreSpec,
)
from kcql.transforms import InsertWallclockTransform, TimestampConverterTransform, Transform

__all__ = [
    "BackupSpec",
    "CodecOptions",
    "ConnectorConfig",
    "EnvelopeOptions",
    "Format",
    "InsertWallclockTransform",
    "KcqlError",
    "KcqlSyntaxError",
    "KcqlValueError",
    "PaddingOptions",
    "PartitionField",
    "RestoreBound",
    "RestoreSpec",
    "TimestampConverterTransform",
    "Transform",
    "parse_backup",
    "parse_connector_config",
    "parse_restore",
    "render",
    "spec_json",
]
