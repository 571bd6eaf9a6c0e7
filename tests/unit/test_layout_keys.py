"""Object key naming and parsing: the spec's examples and a round trip over arbitrary values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from layout.keys import KeyNaming, Padding, escape_segment, parse_object_key, unescape_segment


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


@given(st.one_of(st.none(), st.text()))
def test_escape_round_trip(value: str | None) -> None:
    segment = escape_segment(value)
    assert "/" not in segment and not any(ord(c) < 0x20 for c in segment)
    assert unescape_segment(segment) == value


@given(
    topic=st.text(min_size=1, alphabet=st.characters(categories=["L", "N"], include_characters="-_.")),
    partition=st.integers(0, 10_000),
    offset=st.integers(0, 2**63 - 1),
    values=st.lists(st.one_of(st.none(), st.text(max_size=20)), min_size=1, max_size=4),
    hive=st.booleans(),
)
def test_partitioned_key_round_trip(
    topic: str, partition: int, offset: int, values: list, hive: bool
) -> None:
    names = tuple(f"f{i}" for i in range(len(values)))
    key = KeyNaming("pre/fix", "parquet", names, include_keys=hive).object_key(
        topic, partition, offset, values
    )
    parsed = parse_object_key(key, "pre/fix")
    assert (parsed.topic, parsed.partition, parsed.last_offset, parsed.extension) == (
        topic,
        partition,
        offset,
        "parquet",
    )
    if hive:
        assert parsed.partition_values == dict(zip(names, values, strict=True))
