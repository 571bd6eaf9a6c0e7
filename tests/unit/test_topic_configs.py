"""Which backed-up topic configs a restore recreates on a topic it creates (pure), and what it
says about each one it does not."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tasks.restore.topic_configs import SOURCE_BROKER_CONFIGS, configs_to_create, kept_configs

NOW = 1_700_000_000_000
DAY = 86_400_000


def test_data_configs_are_recreated_as_backed_up():
    configs = {
        "cleanup.policy": "compact,delete",
        "retention.ms": "-1",
        "max.message.bytes": "2097152",
        "min.insync.replicas": "1",
        "message.timestamp.type": "CreateTime",
    }
    create, skipped = configs_to_create(configs, replication=1, oldest_timestamp=NOW - DAY, now_ms=NOW)
    assert create == configs
    assert skipped == []


def test_min_insync_replicas_above_the_replication_factor_is_not_recreated():
    create, skipped = configs_to_create(
        {"min.insync.replicas": "2", "retention.ms": "1000"}, replication=1, oldest_timestamp=None, now_ms=NOW
    )
    assert create == {"retention.ms": "1000"}
    assert [(s.name, s.value, s.instead) for s in skipped] == [("min.insync.replicas", "2", None)]
    assert "replication factor 1" in skipped[0].reason
    line = skipped[0].describe("dst")
    assert line.startswith("dst: topic config min.insync.replicas=2 not recreated: ")


def test_min_insync_replicas_up_to_the_replication_factor_is_recreated():
    create, skipped = configs_to_create({"min.insync.replicas": "3"}, 3, None, NOW)
    assert create == {"min.insync.replicas": "3"} and skipped == []


def test_log_append_time_becomes_create_time_and_says_so():
    create, skipped = configs_to_create({"message.timestamp.type": "LogAppendTime"}, 1, None, NOW)
    assert create == {"message.timestamp.type": "CreateTime"}
    assert skipped[0].instead == "CreateTime"
    assert "created with message.timestamp.type=CreateTime" in skipped[0].describe("dst")


def test_compaction_is_not_recreated_when_the_keys_were_not_backed_up():
    create, skipped = configs_to_create({"cleanup.policy": "compact,delete"}, 1, None, NOW, keys_kept=False)
    assert create == {"cleanup.policy": "delete"} and skipped[0].instead == "delete"
    create, skipped = configs_to_create({"cleanup.policy": "compact"}, 1, None, NOW, keys_kept=False)
    assert create == {} and skipped[0].instead is None and "INVALID_RECORD" in skipped[0].reason
    assert configs_to_create({"cleanup.policy": "compact"}, 1, None, NOW)[0] == {"cleanup.policy": "compact"}


def test_a_timestamp_bound_the_restored_records_break_is_not_recreated():
    configs = {"message.timestamp.before.max.ms": str(DAY)}
    create, skipped = configs_to_create(configs, 1, oldest_timestamp=NOW - 2 * DAY, now_ms=NOW)
    assert create == {} and skipped[0].name == "message.timestamp.before.max.ms"
    create, skipped = configs_to_create(configs, 1, oldest_timestamp=NOW - DAY // 2, now_ms=NOW)
    assert create == configs and skipped == []


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "retention.ms",
                "min.insync.replicas",
                "message.timestamp.type",
                "message.timestamp.before.max.ms",
                "cleanup.policy",
                *SOURCE_BROKER_CONFIGS,
            ]
        ),
        st.sampled_from(
            ["1", "2", "5", "*", "0:1", "LogAppendTime", "CreateTime", "compact", "compact,delete"]
        ),
    ),
    st.integers(1, 4),
    st.one_of(st.none(), st.integers(0, NOW)),
    st.booleans(),
)
def test_every_backed_up_config_is_recreated_or_accounted_for(configs, replication, oldest, keys_kept):
    create, skipped = configs_to_create(configs, replication, oldest, NOW, keys_kept)
    skipped_names = [s.name for s in skipped]
    assert len(skipped_names) == len(set(skipped_names))
    for name, value in configs.items():
        assert create.get(name) == value or name in skipped_names
    for s in skipped:
        assert create.get(s.name) == s.instead and s.reason
    assert not set(create) & set(SOURCE_BROKER_CONFIGS)


def test_an_existing_target_keeps_its_configs_and_the_report_says_which_differ():
    backed_up = {"retention.ms": "-1", "cleanup.policy": "compact", "max.message.bytes": "2000000"}
    target = {"retention.ms": "604800000", "cleanup.policy": "compact"}
    kept = kept_configs(backed_up, target)
    assert [(k.name, k.value) for k in kept] == [("max.message.bytes", "2000000"), ("retention.ms", "-1")]
    assert "its value (604800000) is kept" in kept[1].reason
    assert "its value (unset) is kept" in kept[0].reason
    assert [k.name for k in kept_configs(backed_up, None)] == sorted(backed_up)
