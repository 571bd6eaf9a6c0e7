"""A manifest's invariants (layout/manifest_checks.py), checked when it is read
(tasks.services.manifest_store): backups made by the real export pass, those of older versions in
tests/fixtures too; a sound manifest with one field made impossible is refused, naming that field;
keys outside the backup are refused in those words; chains that cannot be are named."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layout.manifest import Manifest, manifest_key
from layout.manifest_checks import chain_problems, key_outside, manifest_problems
from tasks.services.errors import ImpossibleManifestError, ManifestError
from tasks.services.manifest_store import read_chain, read_manifest
from tasks.services.object_store import MemoryStore
from tests.support.memory_backup import Partitions, backup, messages

BUCKET = "bkt"
KCQL = (
    f"INSERT INTO {BUCKET}:nightly SELECT * FROM orders STOREAS AVRO "
    "PROPERTIES('store.envelope'=true, 'flush.count'=8)"
)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@functools.cache
def _backed_up() -> tuple[MemoryStore, Manifest, Manifest]:
    """A full backup and an incremental one continuing it, committed into a MemoryStore."""
    store = MemoryStore()
    store.create_bucket(BUCKET)
    source = {0: messages(range(20)), 1: messages([*range(5, 12), *range(15, 30)]), 2: messages(range(3))}
    first = backup(store, KCQL, Partitions("orders", source))
    more = {
        0: messages(range(35)),
        1: messages([*range(5, 12), *range(15, 32), *range(36, 40)]),
        2: messages(range(6)),
    }
    second = backup(store, KCQL, Partitions("orders", more), previous=first)
    return store, first, second


def _sound() -> Manifest:
    return _backed_up()[2]


def _with(manifest: Manifest, partition: int, changes: dict[str, Any], obj: int | None = None) -> Manifest:
    """The manifest with fields of one partition (or of one of its objects) changed."""
    entries = list(manifest.partitions)
    entry = entries[partition]
    if obj is None:
        entries[partition] = entry.model_copy(update=changes)
    else:
        objects = list(entry.objects)
        objects[obj] = objects[obj].model_copy(update=changes)
        entries[partition] = entry.model_copy(update={"objects": tuple(objects)})
    return manifest.model_copy(update={"partitions": tuple(entries)})


def _fields(manifest: Manifest, prefix: str = "nightly") -> set[str]:
    return {p.field for p in manifest_problems(manifest, prefix)}


def test_backups_of_the_real_export_are_sound() -> None:
    store, first, second = _backed_up()
    assert second.partitions[1].gaps and len(second.partitions[0].objects) > 1  # a gap, several objects
    assert manifest_problems(first, "nightly", first.backup_id) == []
    assert manifest_problems(second, "/nightly/") == []
    assert chain_problems([first, second]) == {}
    assert read_chain(store, BUCKET, "nightly") == [first, second]


def test_a_partitioned_backup_is_sound() -> None:
    """PARTITIONBY: a partition's objects interleave by offset, one per value; that is no overlap."""
    store = MemoryStore()
    store.create_bucket(BUCKET)
    kcql = (
        f"INSERT INTO {BUCKET}:by SELECT * FROM orders PARTITIONBY _header.h STOREAS AVRO "
        "PROPERTIES('store.envelope'=true)"
    )
    source = {
        0: [m.__class__(m.at, m.k, m.v, m.ts, (("h", str(m.at % 2).encode()),)) for m in messages(range(9))]
    }
    manifest = backup(store, kcql, Partitions("orders", source))
    assert len(manifest.partitions[0].objects) == 2
    assert manifest_problems(manifest, "by") == []


@pytest.mark.parametrize(
    "folder", sorted(p.parent.parent for p in FIXTURES.glob("*/*/_manifests/*.json")), ids=lambda p: p.name
)
def test_manifests_of_older_versions_are_read(folder: Path) -> None:
    """The fixtures' manifests (written before chain ids, object-name suffixes, schemas, protection)."""
    manifests = [
        Manifest.model_validate_json(p.read_bytes()) for p in sorted(folder.glob("_manifests/*.json"))
    ]
    assert [manifest_problems(m, folder.name, m.backup_id) for m in manifests] == [[]] * len(manifests)
    assert chain_problems(manifests) == {}


# One impossible value in a sound manifest: (where: partition, object or None; field; values)
NEGATIVE = st.integers(max_value=-1)
NOT_HEX = st.text(min_size=1, max_size=70).filter(lambda t: len(t) != 64 or t.lower() != t or not t.isalnum())
MUTATIONS = st.one_of(
    st.tuples(st.just(None), st.just("record_count"), NEGATIVE),
    st.tuples(st.just(None), st.just("start_offset"), NEGATIVE),
    st.tuples(st.just(None), st.just("byte_count"), NEGATIVE),
    st.tuples(st.just(None), st.just("records_digest"), NOT_HEX),
    st.tuples(st.just(None), st.just("record_count"), st.integers(min_value=1_000_000)),
    st.tuples(st.just(0), st.just("record_count"), NEGATIVE),
    st.tuples(st.just(0), st.just("size"), NEGATIVE),
    st.tuples(st.just(0), st.just("sha256"), NOT_HEX),
    st.tuples(st.just(0), st.just("records_digest"), NOT_HEX.map(lambda t: "sha256:" + t)),
    st.tuples(
        st.just(0),
        st.just("key"),
        st.one_of(
            st.text(min_size=1).map(lambda t: "../../other/" + t),
            st.text(min_size=1).map(lambda t: "s3://elsewhere/nightly/" + t),
            st.text(min_size=1).map(lambda t: "other/orders/0/" + t),
            st.text(min_size=1).map(lambda t: "nightly/../" + t),
            st.text(min_size=1).map(lambda t: "nightly//" + t),
            st.text(min_size=1).map(lambda t: "nightly/_manifests/" + t),
        ),
    ),
)


@given(partition=st.integers(min_value=0, max_value=2), mutation=MUTATIONS)
def test_one_impossible_field_is_refused_and_named(partition: int, mutation: tuple[Any, str, Any]) -> None:
    obj, name, value = mutation
    manifest = _with(_sound(), partition, {name: value}, obj)
    field = f"partitions[{partition}]" + (f".objects[{obj}]" if obj is not None else "") + f".{name}"
    problems = manifest_problems(manifest, "nightly")
    assert field in {p.field for p in problems}, problems
    where = {p.where for p in problems if p.field == field}
    assert all(w.startswith(f"orders/{manifest.partitions[partition].partition}") for w in where)


@given(partition=st.integers(min_value=0, max_value=2), before=st.integers(min_value=1, max_value=10**6))
def test_a_window_that_ends_before_it_starts_is_refused(partition: int, before: int) -> None:
    start = _sound().partitions[partition].start_offset
    manifest = _with(_sound(), partition, {"end_offset": start - before})
    assert f"partitions[{partition}].end_offset" in _fields(manifest)


def test_the_issue_reproductions_are_named() -> None:
    """A negative record_count (passed plain verify) and a negative end_offset (passed --deep)."""
    negative_count = _with(_sound(), 1, {"record_count": -5})
    [problem] = [p for p in manifest_problems(negative_count, "nightly") if p.field.endswith("record_count")]
    assert str(problem) == "partitions[1].record_count (orders/1): -5, it cannot be less than 0"
    negative_end = _with(_sound(), 0, {"end_offset": -1})
    start = _sound().partitions[0].start_offset
    assert str(manifest_problems(negative_end, "nightly")[0]) == (
        f"partitions[0].end_offset (orders/0): -1 is before the start_offset {start}: "
        "the window cannot end before it starts"
    )


def test_objects_that_do_not_add_up_are_refused() -> None:
    sound = _sound()
    one = sound.partitions[0].objects[0]
    assert _fields(_with(sound, 0, {"record_count": one.record_count + 1}, obj=0)) >= {
        "partitions[0].record_count"  # the objects now hold more than the partition's count
    }
    assert "partitions[0].objects[0].first_offset" in _fields(
        _with(sound, 0, {"first_offset": sound.partitions[0].start_offset - 1}, obj=0)
    )
    assert "partitions[0].objects[0].last_offset" in _fields(
        _with(sound, 0, {"last_offset": one.first_offset - 1}, obj=0)
    )
    second = sound.partitions[0].objects[1]
    overlapping = _with(sound, 0, {"first_offset": one.last_offset}, obj=1)
    assert "partitions[0].objects[1].first_offset" in _fields(overlapping)
    twice = _with(sound, 0, {"key": one.key}, obj=1)
    assert any(p.reason.startswith("listed twice") for p in manifest_problems(twice, "nightly"))
    assert second.key != one.key


def test_a_key_of_another_partition_is_refused() -> None:
    sound = _sound()
    other = sound.partitions[1].objects[0].key
    problems = manifest_problems(_with(sound, 0, {"key": other}, obj=0), "nightly")
    assert any(
        p.field == "partitions[0].objects[0].key"
        and "names an object of orders/1, not of orders/0" in p.reason
        for p in problems
    )


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (
            "../../other/x.avro",
            "key '../../other/x.avro' lies outside the backup: it is not under the backup's prefix 'nightly/'",
        ),
        (
            "daily/orders/0/000000000007.avro",
            "key 'daily/orders/0/000000000007.avro' lies outside the backup: it is not under the backup's "
            "prefix 'nightly/'",
        ),
        (
            "s3://other-bucket/nightly/orders/0/000000000007.avro",
            "key 's3://other-bucket/nightly/orders/0/000000000007.avro' is an address, not a key of the "
            "backup's bucket: it lies outside the backup (s3://<bucket>/nightly/)",
        ),
        (
            "nightly/../other/x.avro",
            "key 'nightly/../other/x.avro' lies outside the backup: a '.', '..' or empty path segment leads "
            "out of its prefix 'nightly/' (the backup escapes them in the names it writes)",
        ),
    ],
)
def test_a_key_outside_the_backup_is_refused_in_those_words(key: str, reason: str) -> None:
    assert key_outside(key, "nightly") == reason
    problems = manifest_problems(_with(_sound(), 0, {"key": key}, obj=0), "nightly")
    assert [p.reason for p in problems if p.field == "partitions[0].objects[0].key"] == [reason]


def test_at_the_bucket_root_an_address_or_an_absolute_key_is_outside() -> None:
    assert key_outside("orders/0/000000000007.avro", "") is None
    assert key_outside("nightly/orders/0/000000000007.avro", "/nightly/") is None
    assert key_outside("s3://b/orders/0/1.avro", "") is not None
    assert key_outside("/orders/0/1.avro", "") is not None


def test_a_chain_that_cannot_be_is_named() -> None:
    _, first, second = _backed_up()
    early = second.partitions[0].model_copy(update={"start_offset": first.partitions[0].end_offset - 1})
    overlapping = second.model_copy(update={"partitions": (early, *second.partitions[1:])})
    [problem] = chain_problems([first, overlapping])[second.backup_id]
    assert problem.field == "partitions[0].start_offset" and "would overlap" in problem.reason
    other_chain = second.model_copy(update={"chain_id": "20200101T000000000Z-000000"})
    assert [p.field for p in chain_problems([first, other_chain])[second.backup_id]] == ["chain_id"]
    suffixed = second.model_copy(update={"chain_suffix": "-cX"})
    assert [p.field for p in chain_problems([first, suffixed])[second.backup_id]] == ["chain_suffix"]
    backwards = first.model_copy(update={"previous_backup_id": second.backup_id, "chain_id": None})
    assert [p.field for p in chain_problems([backwards, second])[first.backup_id]] == ["previous_backup_id"]
    not_its_own = first.model_copy(update={"chain_id": second.backup_id})
    assert [p.field for p in chain_problems([not_its_own])[first.backup_id]] == ["chain_id"]
    assert chain_problems([second]) == {}  # its predecessor gone: only restoring it fails


def test_reading_an_impossible_manifest_refuses_it_naming_its_key() -> None:
    store, first, second = _backed_up()
    copy = MemoryStore()
    copy.create_bucket(BUCKET)
    key = manifest_key("nightly", second.backup_id)
    copy.put(BUCKET, manifest_key("nightly", first.backup_id), first.model_dump_json().encode())
    edited = _with(second, 1, {"record_count": -5}).model_dump_json().encode()
    copy.put(BUCKET, key, edited)
    with pytest.raises(ImpossibleManifestError) as raised:
        read_chain(copy, BUCKET, "nightly")
    assert isinstance(raised.value, ManifestError) and raised.value.key == key
    assert raised.value.problems == ["partitions[1].record_count (orders/1): -5, it cannot be less than 0"]
    assert f"manifest s3://{BUCKET}/{key}: impossible values" in str(raised.value)
    # stored under another backup's name
    copy.put(BUCKET, key, first.model_dump_json().encode())
    with pytest.raises(ImpossibleManifestError, match="backup_id"):
        read_manifest(copy, BUCKET, "nightly", second.backup_id)
    # the chain: an incremental starting before its predecessor ended
    early = second.partitions[0].model_copy(update={"start_offset": first.partitions[0].end_offset - 1})
    copy.put(
        BUCKET,
        key,
        second.model_copy(update={"partitions": (early, *second.partitions[1:])}).model_dump_json().encode(),
    )
    with pytest.raises(ImpossibleManifestError, match=r"partitions\[0\].start_offset") as raised:
        read_chain(copy, BUCKET, "nightly")
    assert raised.value.key == key
    assert read_chain(store, BUCKET, "nightly") == [first, second]
