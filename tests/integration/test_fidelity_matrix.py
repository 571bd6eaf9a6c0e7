"""The fidelity matrix, observed: every case of tests/support/fidelity.py backed up in each lossless
format and restored into a new topic against the real broker and S3 server, compared record by
record with its source; each case keeps what it states, and docs/fidelity.md shows exactly the table
these observations render (`make fidelity` rewrites it)."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from flows.backup import BackupParameters, backup_flow
from flows.restore import RestoreParameters, restore_flow
from tests.support.fidelity import (
    CASES,
    FORMATS,
    Case,
    Observation,
    differences,
    outcome_of,
    render,
    replace_section,
)
from tests.support.kafka import consume_all, create_topic, delete_topics

pytestmark = pytest.mark.usefixtures("prefect_harness")

DOC = Path(__file__).resolve().parents[2] / "docs" / "fidelity.md"
REWRITE = "KBACKUP_WRITE_FIDELITY"


def _name(stem: str) -> str:
    return f"fid-{re.sub(r'[^a-z0-9]+', '-', stem)}-{uuid.uuid4().hex[:8]}"


def _observe(
    case: Case, fmt: str, bucket: str, prefix: str, source: list[Any], kafka_config: dict, admin: Any
) -> Observation:
    target = _name(f"{case.name}-{fmt}")
    properties = f" PROPERTIES({case.restore_properties})" if case.restore_properties else ""
    try:
        restore_flow(
            RestoreParameters(kcql=f"INSERT INTO `{target}` SELECT * FROM {bucket}:{prefix}{properties}")
        )
    except Exception as exc:  # noqa: BLE001 - a refusal is an observation
        created = target in admin.list_topics(timeout=10).topics
        assert not created, f"{case.name} in {fmt}: refused ({exc}) after creating {target}"
        return Observation(case.name, fmt, "refused", 0, str(exc))
    try:
        restored = consume_all(kafka_config, target, case.partitions)
    finally:
        delete_topics(admin, [target])
    diffs = differences(source, restored)
    fields = tuple(diff.split(" (")[0] for diff in diffs)
    return Observation(case.name, fmt, outcome_of(diffs), len(restored), "; ".join(diffs), fields)


@pytest.fixture(scope="module")
def observations(kafka_config: dict, admin: Any, s3: Any) -> dict[tuple[str, str], Observation]:
    topics = {case.name: _name(case.name) for case in CASES}
    bucket = _name("bucket")
    s3.create_bucket(Bucket=bucket)
    try:
        sources: dict[str, list[Any]] = {}
        for case in CASES:
            create_topic(admin, topics[case.name], case.partitions, case.config)
            case.make(kafka_config, topics[case.name])
            sources[case.name] = consume_all(kafka_config, topics[case.name], case.partitions)
        found: dict[tuple[str, str], Observation] = {}
        for fmt in FORMATS:
            prefixes = {case.name: f"{fmt.lower()}-{index}" for index, case in enumerate(CASES)}
            backup_flow(
                BackupParameters(
                    kcql=";\n".join(
                        f"INSERT INTO {bucket}:{prefixes[case.name]} SELECT * FROM `{topics[case.name]}` "
                        f"STOREAS {fmt} PROPERTIES('store.envelope'=true)"
                        for case in CASES
                    )
                )
            )
            for case in CASES:
                found[(case.name, fmt)] = _observe(
                    case, fmt, bucket, prefixes[case.name], sources[case.name], kafka_config, admin
                )
        return found
    finally:
        delete_topics(admin, list(topics.values()))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_case_keeps_what_it_states(case: Case, observations: dict[tuple[str, str], Observation]):
    for fmt in FORMATS:
        seen = observations[(case.name, fmt)]
        assert (seen.outcome, fmt) == (case.expected, fmt), seen.detail
        if seen.outcome != "refused":
            assert seen.records > 0


def test_the_documented_matrix_is_the_observed_one(observations: dict[tuple[str, str], Observation]):
    table = render(CASES, list(observations.values()))
    text = DOC.read_text()
    if os.environ.get(REWRITE) == "1":
        DOC.write_text(replace_section(text, table))
        text = DOC.read_text()
    assert replace_section(text, table) == text, (
        f"{DOC} does not show the observed fidelity matrix: run `make fidelity` to rewrite it"
    )
