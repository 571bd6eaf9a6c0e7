"""Object key naming and parsing: the spec's examples and a round trip over arbitrary values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from layout.keys import (
    EMPTY_SEGMENT,
    NULL_SEGMENT,
    KeyNaming,
    Padding,
    escape_path_name,
    escape_segment,
    parse_object_key,
    unescape_path_name,
    unescape_segment,
)

# Values that keys mangle when they go in unescaped (issue 11): S3 stores `\` as `/`, refuses
# `.` and `..` segments, and `=`, `?`, `#`, `%`, edge spaces and control characters confuse
# parsers, URLs and listings.
NASTY = [
    "a\\b",
    "..",
    ".",
    "...",
    "x=y",
    "q?",
    "#h",
    " spaced ",
    " ",
    "tab\t",
    "ünï",
    "",
    "%",
    "%2F",
    "a/b",
    "null",
    "_empty_",
    "\x00\x7f\x85",
    "🙂",
]
# Arbitrary text, with the nasty characters far more often than st.text() alone would draw them.
values = st.one_of(
    st.none(),
    st.sampled_from(NASTY),
    st.text(),
    st.text(alphabet=st.sampled_from(list("\\/.=%?# \t\n:*'\"{}[]^aü\x7f\x00")), max_size=8),
)


def test_default_layout_matches_the_seed_example() -> None:
    assert KeyNaming("", "avro").object_key("payments", 0, 1234) == "payments/0/000000001234.avro"
    assert (
        KeyNaming("backups/daily", "parquet").object_key("p", 11, 7)
        == "backups/daily/p/11/000000000007.parquet"
    )


def test_partitionby_layout_and_hive_style() -> None:
    names = ("year", "product_category", "region")
    plain = KeyNaming("sales-backup", "json", names)
    hive = KeyNaming("sales-backup", "json", names, include_keys=True)
    values = ["2023", "Electronics", "EMEA"]
    assert (
        plain.object_key("sales", 2, 99, values)
        == "sales-backup/2023/Electronics/EMEA/sales(2_000000000099).json"
    )
    assert (
        hive.object_key("sales", 2, 99, values)
        == "sales-backup/year=2023/product_category=Electronics/region=EMEA/sales(2_000000000099).json"
    )


def test_padding_and_suffix() -> None:
    naming = KeyNaming("", "json", padding=Padding(lengths={"offset": 5, "partition": 3}), key_suffix="-x")
    assert naming.object_key("t", 7, 42) == "t/007/00042-x.json"
    assert KeyNaming("", "json", padding=Padding(type="NoOp")).object_key("t", 0, 42) == "t/0/42.json"


def test_parse_reads_stream_reactor_names() -> None:
    parsed = parse_object_key("p/orders/3/000000000010_1700000000000_1700000005000.avro", "p")
    assert (parsed.topic, parsed.partition, parsed.last_offset, parsed.extension) == ("orders", 3, 10, "avro")
    unknown = parse_object_key("p/avro/0", "p")
    assert (unknown.topic, unknown.partition, unknown.last_offset) == (None, None, None)


def test_null_and_unsafe_values_are_escaped() -> None:
    naming = KeyNaming("", "json", ("a", "b"), include_keys=True)
    key = naming.object_key("t", 0, 1, [None, "x/y\n%"])
    assert key == "a=null/b=x%2Fy%0A%25/t(0_000000000001).json"
    assert parse_object_key(key).partition_values == {"a": None, "b": "x/y\n%"}


def test_nasty_values_escape_as_hive_does_plus_dots_and_edge_spaces() -> None:
    assert [escape_segment(v) for v in NASTY] == [
        "a%5Cb",
        "%2E%2E",
        "%2E",
        "...",
        "x%3Dy",
        "q%3F",
        "%23h",
        "%20spaced%20",
        "%20",
        "tab%09",
        "ünï",
        EMPTY_SEGMENT,
        "%25",
        "%252F",
        "a%2Fb",
        "%6Eull",
        "%5Fempty_",
        "%00%7F%85",
        "🙂",
    ]
    assert escape_segment(None) == NULL_SEGMENT == "null" and EMPTY_SEGMENT == "_empty_"
    assert escape_path_name("a b") == "a b" and escape_path_name("'\"*:{[]}^") == "%27%22%2A%3A%7B%5B%5D}%5E"


@given(values)
def test_escape_round_trip(value: str | None) -> None:
    segment = escape_segment(value)
    assert unescape_segment(segment) == value
    assert segment and "/" not in segment and "\\" not in segment and segment not in (".", "..")
    assert segment == segment.strip(" ")
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in segment)
    assert not set(segment) & set("\"#'*:=?{[]^")
    if value is not None:
        assert unescape_path_name(escape_path_name(value)) == value


@given(
    topic=st.text(min_size=1, alphabet=st.characters(categories=["L", "N"], include_characters="-_.")),
    partition=st.integers(0, 10_000),
    offset=st.integers(0, 2**63 - 1),
    field_values=st.lists(values, min_size=1, max_size=4),
    names=st.lists(
        st.sampled_from(["f", "x=y", "a/b", "null", " n ", ".", "ü"]), min_size=4, max_size=4, unique=True
    ),
    hive=st.booleans(),
)
def test_partitioned_key_round_trip(
    topic: str, partition: int, offset: int, field_values: list, names: list, hive: bool
) -> None:
    names = names[: len(field_values)]
    key = KeyNaming("pre/fix", "parquet", tuple(names), include_keys=hive).object_key(
        topic, partition, offset, field_values
    )
    segments = key.split("/")
    assert len(segments) == 2 + len(field_values) + 1
    assert "\\" not in key and not {".", "..", ""} & set(segments)
    parsed = parse_object_key(key, "pre/fix")
    assert (parsed.topic, parsed.partition, parsed.last_offset, parsed.extension) == (
        topic,
        partition,
        offset,
        "parquet",
    )
    if hive:
        assert parsed.partition_values == dict(zip(names, field_values, strict=True))
    else:
        assert list(parsed.partition_values.values()) == field_values


def test_keys_written_before_the_escaping_still_parse() -> None:
    """Keys of older backups (only `/`, `%` and control characters escaped) read back the same."""
    parsed = parse_object_key("p/v=x=y/w=q?/t(0_000000000001).json", "p")
    assert parsed.partition_values == {"v": "x=y", "w": "q?"}
    assert parse_object_key("p/topic/3/000000000010.avro", "p").topic == "topic"
