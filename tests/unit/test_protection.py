"""Encryption and Object Lock (README, "Encryption and immutability"), the pure parts: the KCQL
properties and their combinations, the upload arguments a backup's protection makes, what the
manifest records and what `kbackup ls` shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from kbackup.commands.ls import restore_points
from kcql import parse_backup, parse_restore
from kcql.errors import KcqlError
from kcql.specs import ProtectionOptions
from layout.manifest import Manifest, Protection, backup_time, new_backup_id, protection_of

B = "INSERT INTO bkt:p SELECT * FROM t"


def _protection(properties: str) -> ProtectionOptions:
    [spec] = parse_backup(f"{B} PROPERTIES({properties})")
    return spec.protection


def test_properties_set_the_protection() -> None:
    assert _protection("'sse'='AES256'") == ProtectionOptions(sse="AES256")
    assert _protection("'sse'='AWS:KMS', 'sse.kms.key.id'='alias/backups'") == ProtectionOptions(
        sse="aws:kms", kms_key_id="alias/backups"
    )
    assert _protection("'object.lock.mode'='governance', 'object.lock.retention'='30d'") == ProtectionOptions(
        lock_mode="GOVERNANCE", lock_retention_s=30 * 86400
    )
    assert (
        _protection("'object.lock.mode'='COMPLIANCE', 'object.lock.retention'='12h'").lock_retention_s
        == 43200
    )
    [plain] = parse_backup(B)
    assert plain.protection == ProtectionOptions()


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ("'sse'='aws:kms'", "column 46: expected 'sse.kms.key.id' beside 'sse'='aws:kms'"),
        ("'sse.kms.key.id'='k'", "column 46: expected 'sse'='aws:kms' with 'sse.kms.key.id'"),
        ("'sse'='AES256', 'sse.kms.key.id'='k'", "expected 'sse'='aws:kms' with 'sse.kms.key.id'"),
        (
            "'object.lock.mode'='GOVERNANCE'",
            "column 46: expected 'object.lock.mode' and 'object.lock.retention' together",
        ),
        (
            "'object.lock.retention'='7d'",
            "column 46: expected 'object.lock.mode' and 'object.lock.retention' together",
        ),
        ("'sse'='DES'", "'AES256' or 'aws:kms' for 'sse'"),
        ("'object.lock.mode'='LEGAL'", "'GOVERNANCE' or 'COMPLIANCE' for 'object.lock.mode'"),
        ("'object.lock.mode'='GOVERNANCE', 'object.lock.retention'='forever'", "for 'object.lock.retention'"),
        ("'sse.kms.key.id'=''", "a non-empty string for 'sse.kms.key.id'"),
    ],
)
def test_bad_combinations_are_kcql_errors_naming_the_property(properties: str, expected: str) -> None:
    with pytest.raises(KcqlError) as raised:
        parse_backup(f"{B} PROPERTIES({properties})")
    assert expected in str(raised.value)


def test_protection_is_a_backup_property_only() -> None:
    with pytest.raises(KcqlError, match="'sse' is a backup property"):
        parse_restore("INSERT INTO t SELECT * FROM bkt:p PROPERTIES('sse'='AES256')")


def test_one_retention_date_per_backup_from_its_start() -> None:
    started = datetime(2026, 11, 28, 12, 0, 0, 456000, tzinfo=UTC)
    backup_id = new_backup_id(started)
    options = ProtectionOptions(
        sse="aws:kms", kms_key_id="key-1", lock_mode="GOVERNANCE", lock_retention_s=3600
    )
    protection = protection_of(options, backup_id)
    assert protection == Protection(
        sse="aws:kms",
        kms_key_id="key-1",
        lock_mode="GOVERNANCE",
        retain_until=datetime(2026, 11, 28, 13, 0, 0, tzinfo=UTC),
    )
    assert protection_of(options, backup_id) == protection  # every export task computes the same
    assert backup_time(backup_id) < protection.retain_until  # type: ignore[operator]
    assert protection.put_arguments() == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "key-1",
        "ObjectLockMode": "GOVERNANCE",
        "ObjectLockRetainUntilDate": datetime(2026, 11, 28, 13, 0, 0, tzinfo=UTC),
    }
    assert protection.describe() == "aws:kms (key-1); GOVERNANCE until 2026-11-28 13:00:00"
    assert protection_of(ProtectionOptions(), backup_id) is None
    sse_only = protection_of(ProtectionOptions(sse="AES256"), backup_id)
    assert sse_only is not None and sse_only.put_arguments() == {"ServerSideEncryption": "AES256"}
    assert sse_only.describe() == "AES256"


def _manifest(**extra: object) -> Manifest:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    return Manifest(
        backup_id=new_backup_id(now),
        previous_backup_id=None,
        started_at=now,
        finished_at=now,
        kcql=B,
        spec={},
        format="JSON",
        extension="json",
        lossless=False,
        cluster_id=None,
        topics=(),
        partitions=(),
        **extra,  # type: ignore[arg-type]
    )


def test_manifests_without_protection_stay_valid_and_ls_shows_it() -> None:
    older = json.loads(_manifest().model_dump_json())
    del older["protection"]  # a manifest written before protection existed
    assert Manifest.model_validate(older).protection is None
    locked = _manifest(
        protection=Protection(
            sse="AES256", lock_mode="COMPLIANCE", retain_until=datetime(2026, 12, 28, tzinfo=UTC)
        )
    )
    assert Manifest.model_validate_json(locked.model_dump_json()) == locked
    rows = restore_points([Manifest.model_validate(older), locked])
    assert [row["protection"] for row in rows] == ["-", "AES256; COMPLIANCE until 2026-12-28 00:00:00"]
