"""Hypothesis: random valid specs survive render → parse; garbage raises only KcqlError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kcql import KcqlError, parse_backup, parse_restore, render
from kcql.specs import Format

names = st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True)
buckets = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)
prefixes = st.one_of(st.just(""), st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}", fullmatch=True))
fields = st.sampled_from(
    [
        "_key",
        "_key.a",
        "_value.a.b",
        "_header.region",
        "_topic",
        "_partition",
        "_date.yyyy-MM-dd-HH",
        "product_category",
    ]
)
backup_props = st.fixed_dictionaries(
    {},
    optional={
        "store.envelope": st.booleans(),
        "store.envelope.headers": st.booleans(),
        "partition.include.keys": st.booleans(),
        "flush.count": st.integers(1, 10**9),
        "flush.size": st.integers(1, 10**12),
        "flush.interval": st.integers(1, 10**6),
        "key.converter": st.sampled_from(["bytes", "string", "json"]),
        "padding.type": st.sampled_from(["LeftPad", "RightPad", "NoOp"]),
        "padding.length.partition": st.integers(1, 9),
        "isolation.level": st.sampled_from(["read_committed", "read_uncommitted"]),
    },
)


def _props_text(props: dict) -> str:
    def value(v: object) -> str:
        return (
            ("true" if v else "false") if isinstance(v, bool) else str(v) if isinstance(v, int) else f"'{v}'"
        )

    return (" PROPERTIES(" + ", ".join(f"'{k}'={value(v)}" for k, v in props.items()) + ")") if props else ""


@given(
    bucket=buckets,
    prefix=prefixes,
    topic=names,
    by=st.lists(fields, max_size=3),
    fmt=st.sampled_from(list(Format)),
    props=backup_props,
    legacy=st.one_of(st.none(), st.integers(1, 10**6)),
    legacy_interval=st.one_of(st.none(), st.integers(1, 10**6)),
)
def test_backup_render_parse_round_trip(
    bucket: str,
    prefix: str,
    topic: str,
    by: list,
    fmt: Format,
    props: dict,
    legacy: int | None,
    legacy_interval: int | None,
) -> None:
    target = f"{bucket}:{prefix}" if prefix else bucket
    text = (
        f"INSERT INTO {target} SELECT * FROM `{topic}`"
        + (f" PARTITIONBY {', '.join(by)}" if by else "")
        + f" STOREAS {fmt.value}"
    )
    if legacy and "flush.count" not in props:
        text += f" WITH_FLUSH_COUNT = {legacy}"
    if legacy_interval and "flush.interval" not in props:
        text += f" WITH_FLUSH_INTERVAL = {legacy_interval}"
    [spec] = parse_backup(text + _props_text(props))
    assert parse_backup(render(spec)) == [spec]


@given(
    topic=st.one_of(names, st.just("*")),
    bucket=buckets,
    prefix=prefixes,
    limit=st.one_of(st.none(), st.integers(1, 10**6)),
    parts=st.lists(st.integers(0, 99), min_size=1, max_size=4),
)
def test_restore_render_parse_round_trip(
    topic: str, bucket: str, prefix: str, limit: int | None, parts: list
) -> None:
    target = f"{bucket}:{prefix}" if prefix else bucket
    text = f"INSERT INTO {topic if topic == '*' else '`' + topic + '`'} SELECT * FROM {target}" + (
        f" LIMIT {limit}" if limit else ""
    )
    text += f" PROPERTIES('restore.partitions'='{','.join(map(str, parts))}', 'restore.filter'='region=EMEA')"
    [spec] = parse_restore(text)
    assert parse_restore(render(spec)) == [spec]


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(
            list("INSERT INTO SELECT*FROM`'‘’(),;=:._-abc0123 \n")
            + [" STOREAS ", " PROPERTIES(", " PARTITIONBY ", " LIMIT "]
        )
    ).map("".join)
    | st.text()
)
def test_garbage_raises_only_kcql_errors(text: str) -> None:
    for parse in (parse_backup, parse_restore):
        try:
            parse(text)
        except KcqlError as error:
            assert error.line >= 1 and error.column >= 1
