"""The selection: one grammar for restore.from / restore.to / restore.partitions / restore.filter,
in the statement and in the overrides; errors name where the bad value came from; the Selection
built from the statement's spec."""

from __future__ import annotations

import pytest

from kcql import KcqlError
from kcql.selection import DEFAULT_BATCH, OverrideError, Selection, Window, restore_selection

STATEMENT = "INSERT INTO t SELECT * FROM bkt:p"
NEW_YEAR_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "timestamp_ms", "offset"),
    [
        ("2026-01-01T00:00:00Z", NEW_YEAR_MS, None),
        ("2026-01-01T01:00:00+01:00", NEW_YEAR_MS, None),
        ("2026-01-01", NEW_YEAR_MS, None),  # no zone: UTC
        (str(NEW_YEAR_MS), NEW_YEAR_MS, None),  # epoch milliseconds
        ("offset:12", None, 12),
        ("OFFSET:0", None, 0),
    ],
)
def test_a_bound_means_the_same_in_the_statement_and_as_an_override(text, timestamp_ms, offset):
    in_statement = restore_selection(
        f"{STATEMENT} PROPERTIES('restore.from'='{text}', 'restore.to'='{text}')"
    )
    overridden = restore_selection(STATEMENT, restore_from=text, restore_to=text)
    for selection in (in_statement, overridden):
        assert selection.window == Window(
            from_timestamp=timestamp_ms, to_timestamp=timestamp_ms, from_offset=offset, to_offset=offset
        )


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("region=EMEA", (("region", "EMEA"),)),
        ("region=EMEA, year = 2023", (("region", "EMEA"), ("year", "2023"))),
        ("region=EMEA,", (("region", "EMEA"),)),  # a stray comma is skipped
        ("v=a=b", (("v", "a=b"),)),
        ("v=", (("v", ""),)),
    ],
)
def test_a_filter_means_the_same_in_the_statement_and_as_an_override(text, pairs):
    assert restore_selection(f"{STATEMENT} PROPERTIES('restore.filter'='{text}')").filter == pairs
    assert restore_selection(STATEMENT, filter=text).filter == pairs


def test_overrides_replace_the_statements_values_and_unset_ones_keep_them():
    statement = (
        "INSERT INTO t SELECT * FROM bkt:p PROPERTIES('restore.from'='offset:1', "
        "'restore.partitions'='0,1', 'restore.filter'='a=1')"
    )
    kept = restore_selection(statement, target="", partitions=[], filter=None)
    assert (kept.target_topic, kept.partitions, kept.filter) == ("t", (0, 1), (("a", "1"),))
    changed = restore_selection(statement, target="u", restore_to="offset:9", partitions="2,5", filter="b=2")
    assert changed.target_topic == "u"
    assert changed.window == Window(from_offset=1, to_offset=9)
    assert (changed.partitions, changed.filter) == ((2, 5), (("b", "2"),))
    assert restore_selection(statement, partitions=[3]).partitions == (3,)


@pytest.mark.parametrize(
    ("keyword", "value", "expected"),
    [
        ("restore_from", "yesterday", "an ISO-8601 time"),
        ("restore_to", "offset:-1", "an integer ≥ 0"),
        ("filter", "region", "name=value pairs"),
        ("filter", "=EMEA", "name=value pairs"),
        ("partitions", "0,x", "partition numbers"),
    ],
)
def test_a_bad_override_names_its_flag(keyword, value, expected):
    names = {
        "restore_from": "--from",
        "restore_to": "--to",
        "filter": "--filter",
        "partitions": "--partitions",
    }
    with pytest.raises(OverrideError) as error:
        restore_selection(STATEMENT, names=names, **{keyword: value})
    assert isinstance(error.value, KcqlError)
    assert (error.value.name, error.value.value) == (names[keyword], value)
    assert expected in error.value.expected
    assert str(error.value) == f"{names[keyword]}: expected {error.value.expected}, found {value!r}"
    # without names, the parameter's own name
    with pytest.raises(OverrideError) as error:
        restore_selection(STATEMENT, **{keyword: value})
    assert error.value.name == keyword


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("restore.from", "yesterday", "an ISO-8601 time"),
        ("restore.filter", "region", "name=value pairs"),
        ("restore.filter", "=EMEA", "name=value pairs"),
        ("restore.filter", ",", "name=value pairs"),
    ],
)
def test_a_bad_value_in_the_statement_names_its_line_and_column(name, value, expected):
    text = f"{STATEMENT}\nPROPERTIES('{name}'='{value}')"
    with pytest.raises(KcqlError) as error:
        restore_selection(text)
    assert not isinstance(error.value, OverrideError)
    assert (error.value.line, error.value.column) == (2, len(f"PROPERTIES('{name}'=") + 1)
    assert expected in error.value.expected and name in error.value.expected


def test_one_statement_only():
    with pytest.raises(ValueError, match="exactly one statement, got 2"):
        restore_selection(f"{STATEMENT}; {STATEMENT}")


def test_the_selection_takes_the_statements_choices_and_defaults():
    plain = restore_selection(STATEMENT)
    assert plain == Selection(target_topic="t", bucket="bkt", prefix="p", envelope=False)
    assert (plain.batch, plain.preflight, plain.target_nonempty) == (DEFAULT_BATCH, "quick", "refuse")
    chosen = restore_selection(
        "INSERT INTO t SELECT * FROM bkt:a/b STOREAS PARQUET LIMIT 7 PROPERTIES('store.envelope'=true, "
        "'store.envelope.key'=false, 'key.converter'='string', 'source.topic'='src', "
        "'restore.partitioner'='murmur2', 'restore.group.prefix'='g-', 'restore.preflight'='none', "
        "'restore.target.nonempty'='append')",
        translate_groups=False,
    )
    assert chosen == Selection(
        target_topic="t",
        bucket="bkt",
        prefix="a/b",
        format="PARQUET",
        envelope=True,
        envelope_parts=(False, True, True, True),
        key_converter="string",
        source_topic="src",
        partitioner="murmur2",
        batch=7,
        group_prefix="g-",
        translate_groups=False,
        preflight="none",
        target_nonempty="append",
    )


def test_a_group_prefix_override_replaces_the_statements():
    statement = f"{STATEMENT} PROPERTIES('restore.group.prefix'='g-')"
    assert restore_selection(statement).group_prefix == "g-"
    assert restore_selection(statement, group_prefix="").group_prefix == "g-"  # empty: not set
    assert restore_selection(statement, group_prefix="h-").group_prefix == "h-"


def test_a_topic_prefix_from_the_statement_or_an_override():
    statement = f"{STATEMENT} PROPERTIES('restore.topic.prefix'='drill-1-')"
    assert restore_selection(STATEMENT).topic_prefix == ""
    assert restore_selection(statement).topic_prefix == "drill-1-"
    assert restore_selection(statement, topic_prefix="").topic_prefix == "drill-1-"  # empty: not set
    assert restore_selection(statement, topic_prefix="copy.").topic_prefix == "copy."


def test_a_topic_prefix_holds_only_what_a_topic_name_may():
    with pytest.raises(KcqlError, match="topic-name prefix"):
        restore_selection(f"{STATEMENT} PROPERTIES('restore.topic.prefix'='a b')")
    with pytest.raises(OverrideError, match="--topic-prefix: expected a topic-name prefix"):
        restore_selection(STATEMENT, topic_prefix="a/b", names={"topic_prefix": "--topic-prefix"})
