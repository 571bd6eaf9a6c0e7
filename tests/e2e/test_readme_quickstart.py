"""User story: a newcomer follows the README's quickstart. Each `kbackup` command of its block runs,
in order, as written — through the installed script, from a folder outside the repository — with
the demo's names (topic `payments`, bucket `demo-backups`, target `payments-copy`) replaced by this
test's own: every run exits 0 without an ERROR or traceback line, and the restored topic's digests
equal the source's. (`make demo`, which the quickstart starts with, is the demo itself; the
static checks of the README are tests/unit/test_readme.py.)"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import Kbackup
from tests.support.cli import assert_clean_success
from tests.support.docs import README, kbackup_commands, section
from tests.support.kafka import consume_all
from tests.support.topics import topic_digests, tricky_messages

pytestmark = pytest.mark.usefixtures("prefect_harness")

PARTITIONS = 3  # as the demo's `payments`


def with_names(argv: list[str], names: dict[str, str]) -> list[str]:
    """`argv` with each of the demo's names replaced in one pass, the longest name first (so
    `payments-copy` is not read as `payments`)."""
    pattern = re.compile("|".join(re.escape(name) for name in sorted(names, key=len, reverse=True)))
    return [pattern.sub(lambda match: names[match.group()], arg) for arg in argv]


def test_the_readme_quickstart_runs_as_written(
    kafka_config: dict[str, Any], filled_topic: Any, bucket: str, target_topic: Any, kbackup: Kbackup
) -> None:
    source = filled_topic(
        "payments", PARTITIONS, tricky_messages(partitions=PARTITIONS, random_per_partition=30)
    )
    target = target_topic("payments-copy")
    names = {"demo-backups": bucket, "payments-copy": f"`{target}`", "payments": f"`{source}`"}
    commands = kbackup_commands(section(README.read_text(), "Quickstart"))
    assert [argv[0] for argv in commands] == ["backup", "ls", "verify", "restore"]

    outputs = {}
    for argv in commands:
        result = kbackup(*with_names(argv, names))
        assert_clean_success(result)
        outputs[argv[0]] = result.stdout
    assert source in outputs["ls"] and "AVRO" in outputs["ls"]

    restored = consume_all(kafka_config, target, PARTITIONS)
    source_messages = consume_all(kafka_config, source, PARTITIONS)
    assert len(restored) == len(source_messages) == 13 + PARTITIONS * 30
    assert topic_digests(restored) == topic_digests(source_messages)
