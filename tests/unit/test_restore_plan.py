"""Restore planning in memory: discovery from manifest chains (layout.restore.from_manifests) and from
listings (tasks.restore.discover_listing), both building units with layout.restore.units. No services:
manifests and listings are made here, as plan_restore would have read them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcql.selection import Selection, Window, restore_selection
from kcql.specs import BackupSpec, CodecOptions, EnvelopeOptions, Format
from layout.keys import KeyNaming
from layout.manifest import (
    CommittedOffset,
    GroupOffsets,
    Manifest,
    ObjectEntry,
    OffsetGap,
    PartitionEntry,
    TopicEntry,
)
from layout.restore.errors import (
    BackupIncompleteError,
    NothingToRestoreError,
    RestoreFilterError,
    UnsupportedRestoreError,
)
from layout.restore.from_manifests import GROUPS_NOT_TRANSLATED, NOT_LOSSLESS, plan_from_manifests
from layout.restore.plan import RestorePlan, restore_id
from layout.spec_bridge import codec_context, codec_of
from tasks.restore.discover_listing import (
    ENVELOPE_NOTE,
    OFFSET_WINDOW_NOTE,
    VALUE_ONLY_NOTE,
    listing_format,
    plan_from_listing,
    refuse_uncommitted_backup,
)
from tasks.restore.errors import PreflightError
from tasks.restore.preflight import preflight
from tasks.services.object_store import ObjectInfo

BUCKET, PREFIX = "bkt", "nightly"
T0 = 1_700_000_000_000  # a record timestamp: offset n of a partition is stamped T0 + n


def selection(**choices: Any) -> Selection:
    return Selection(**{"target_topic": "copy", "bucket": BUCKET, "prefix": PREFIX, **choices})


def obj(topic: str, partition: int, first: int, last: int, **values: str) -> ObjectEntry:
    naming = KeyNaming(prefix=PREFIX, extension="avro", partition_names=tuple(values), include_keys=True)
    return ObjectEntry(
        key=naming.object_key(topic, partition, last, tuple(values.values())),
        first_offset=first,
        last_offset=last,
        record_count=last - first + 1,
        min_timestamp=T0 + first,
        max_timestamp=T0 + last,
        size=100 + last,
        sha256=f"sha-{topic}-{partition}-{last}",
        records_digest=f"digest-{topic}-{partition}-{last}",
        partition_values=values,
    )


def part(
    topic: str,
    partition: int,
    start: int,
    end: int,
    objects: list[ObjectEntry],
    gaps: tuple[OffsetGap, ...] = (),
) -> PartitionEntry:
    return PartitionEntry(
        topic=topic,
        partition=partition,
        start_offset=start,
        end_offset=end,
        record_count=sum(o.record_count for o in objects),
        byte_count=sum(o.size for o in objects),
        records_digest=f"digest-{topic}-{partition}-{start}-{end}",
        gaps=gaps,
        objects=tuple(objects),
    )


def manifest(
    backup_id: str,
    partitions: list[PartitionEntry],
    fmt: str = "AVRO",
    lossless: bool = True,
    partition_count: int = 3,
    groups: tuple[GroupOffsets, ...] = (),
) -> Manifest:
    topics = sorted({p.topic for p in partitions})
    return Manifest(
        backup_id=backup_id,
        previous_backup_id=None,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=datetime(2026, 1, 1, tzinfo=UTC),
        kcql="INSERT INTO bkt:nightly SELECT * FROM orders",
        spec={"format": fmt, "envelope": {"enabled": lossless}},
        format=fmt,
        extension=fmt.lower(),
        lossless=lossless,
        cluster_id="c1",
        topics=tuple(
            TopicEntry(
                name=t,
                partition_count=partition_count,
                replication_factor=1,
                configs={"cleanup.policy": "delete"},
            )
            for t in topics
        ),
        partitions=tuple(partitions),
        consumer_groups=groups,
    )


def listing_of(chain: list[Manifest]) -> dict[str, ObjectInfo]:
    """The listing of the prefix, every manifest's objects in the bucket with their sizes."""
    return {o.key: ObjectInfo(o.key, o.size) for m in chain for p in m.partitions for o in p.objects}


def a_chain() -> list[Manifest]:
    """A full backup of orders 0..1, then an incremental one; partition 1 lost offsets 20..24 to
    retention between the two, and 0 has a compaction gap recorded by the first."""
    full = manifest(
        "20260101T000000000Z-aaaaaa",
        [
            part(
                "orders",
                0,
                0,
                20,
                [obj("orders", 0, 0, 9), obj("orders", 0, 12, 19)],
                gaps=(OffsetGap(first=10, last=11, cause="compaction"),),
            ),
            part("orders", 1, 0, 20, [obj("orders", 1, 0, 19)]),
        ],
        groups=(
            GroupOffsets(group="billing", offsets=(CommittedOffset(topic="orders", partition=0, offset=15),)),
        ),
    )
    incremental = manifest(
        "20260102T000000000Z-bbbbbb",
        [
            part("orders", 0, 20, 30, [obj("orders", 0, 20, 29)]),
            part("orders", 1, 25, 30, [obj("orders", 1, 25, 29)]),
        ],
        groups=(
            GroupOffsets(group="billing", offsets=(CommittedOffset(topic="orders", partition=0, offset=27),)),
        ),
    )
    return [full, incremental]


def keys_of(plan: RestorePlan, unit_id: str) -> list[str]:
    return [o.key for o in next(u for u in plan.units if u.unit_id == unit_id).objects]


# --- the restore's id ---------------------------------------------------------------------------

RICH_STATEMENT = (
    "INSERT INTO copy SELECT * FROM bkt:nightly STOREAS AVRO LIMIT 500 PROPERTIES("
    "'store.envelope'=true, 'store.envelope.headers'=false, 'value.converter'='string', "
    "'source.topic'='orders', 'restore.from'='2026-01-01T00:00:00Z', 'restore.to'='offset:900', "
    "'restore.partitions'='0,2', 'restore.filter'='region=EMEA,year=2023', "
    "'restore.partitioner'='murmur2', 'restore.group.prefix'='r-', 'restore.preflight'='full', "
    "'restore.target.nonempty'='append')"
)


@pytest.mark.parametrize(
    ("statement", "overrides", "backups", "expected"),
    [
        ("INSERT INTO copy SELECT * FROM bkt:nightly/p", {}, ["b1", "b2"], "007d359f8fef94a0"),
        ("INSERT INTO copy SELECT * FROM bkt:nightly/p", {}, ["listing:6:k"], "4691ea3bbcde75e9"),
        (RICH_STATEMENT, {"translate_groups": False}, ["b1", "b2"], "9216666b7cbd605f"),
    ],
)
def test_the_restore_id_of_a_statement_never_changes(statement, overrides, backups, expected):
    """A restore resumes by its id (it names the transactional ids and consumer groups): the ids
    here were computed before the Selection moved to kcql/, and must stay byte for byte."""
    assert restore_id(restore_selection(statement, **overrides), backups) == expected


def test_a_topic_prefix_is_in_the_restore_id_only_when_set():
    """Restores from before `restore.topic.prefix` existed keep their ids (and resume); a prefix
    (a drill's scratch topics) makes another restore."""
    plain = "INSERT INTO copy SELECT * FROM bkt:nightly/p"
    assert restore_id(restore_selection(plain, topic_prefix=""), ["b1", "b2"]) == "007d359f8fef94a0"
    prefixed = restore_id(restore_selection(plain, topic_prefix="drill-x-"), ["b1", "b2"])
    in_statement = f"{plain} PROPERTIES('restore.topic.prefix'='drill-x-')"
    assert prefixed != "007d359f8fef94a0"
    assert restore_id(restore_selection(in_statement), ["b1", "b2"]) == prefixed


def test_a_topic_prefix_names_every_target_and_its_units():
    chain = a_chain()
    for chosen, expected in ((selection(target_topic="*"), "orders"), (selection(), "copy")):
        prefixed = chosen.model_copy(update={"topic_prefix": "drill-1-"})
        plan = plan_from_manifests(prefixed, chain, listing_of(chain))
        assert [t.name for t in plan.targets] == [f"drill-1-{expected}"]
        assert {u.target_topic for u in plan.units} == {f"drill-1-{expected}"}


# --- from manifests ----------------------------------------------------------------------------


def test_a_chain_restores_each_partition_across_its_backups_in_offset_order():
    chain = a_chain()
    plan = plan_from_manifests(selection(), chain, listing_of(chain))
    assert plan.manifest_format and plan.lossless and plan.envelope and plan.format == "AVRO"
    assert plan.backup_ids == tuple(m.backup_id for m in chain)
    assert plan.restore_id == restore_id(selection(), plan.backup_ids)
    assert [u.unit_id for u in plan.units] == ["orders.0", "orders.1"]
    zero, one = plan.units
    assert [(o.first_offset, o.backup_id) for o in zero.objects] == [
        (0, chain[0].backup_id),
        (12, chain[0].backup_id),
        (20, chain[1].backup_id),
    ]
    assert [(s.backup_id, s.start_offset, s.end_offset) for s in zero.segments] == [
        (chain[0].backup_id, 0, 20),
        (chain[1].backup_id, 20, 30),
    ]
    assert zero.gaps == (OffsetGap(first=10, last=11, cause="compaction"),)
    # the hole between the first backup's end (20) and the next one's start (25) is a gap too
    assert one.gaps == (OffsetGap(first=20, last=24, cause="retention"),)
    for unit in plan.units:
        assert (unit.target_topic, unit.routing, unit.target_partition) == (
            "copy",
            "preserve",
            unit.source_partition,
        )
        assert unit.offsets_known and unit.check_gaps and unit.compare_segments
    assert zero.translate_offsets == (15, 27) and one.translate_offsets == ()
    assert plan.consumer_groups == chain[-1].consumer_groups
    (target,) = plan.targets
    assert (target.name, target.partitions_needed, target.partition_count) == ("copy", 2, 3)
    assert (target.replication_factor, target.configs, target.oldest_timestamp) == (
        1,
        {"cleanup.policy": "delete"},
        T0,
    )
    assert plan.notes == () and plan.record_estimate == (10 + 8 + 10) + (20 + 5)


def test_an_object_of_the_manifest_keeps_what_the_preflight_and_the_decoder_check():
    chain = a_chain()
    plan = plan_from_manifests(selection(), chain, listing_of(chain))
    first = plan.units[0].objects[0]
    entry = chain[0].partitions[0].objects[0]
    assert (first.key, first.size, first.sha256, first.record_count) == (
        entry.key,
        entry.size,
        entry.sha256,
        entry.record_count,
    )
    assert (first.min_timestamp, first.max_timestamp) == (entry.min_timestamp, entry.max_timestamp)


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (Window(from_offset=12), {"orders.0": [12, 20], "orders.1": [0, 25]}),
        (Window(to_offset=12), {"orders.0": [0], "orders.1": [0]}),
        (Window(from_offset=20, to_offset=21), {"orders.0": [20], "orders.1": []}),
        (Window(from_timestamp=T0 + 26), {"orders.0": [20], "orders.1": [25]}),
        (Window(to_timestamp=T0), {"orders.0": [], "orders.1": []}),  # [from, to): nothing before T0
    ],
)
def test_a_window_skips_objects_that_cannot_hold_a_selected_record(window, expected):
    chain = a_chain()
    plan = plan_from_manifests(selection(window=window), chain, listing_of(chain))
    assert {u.unit_id: [o.first_offset for o in u.objects] for u in plan.units} == expected
    # records are filtered: holes are no longer all gaps, and the digests cover the whole windows
    assert not any(u.check_gaps or u.compare_segments for u in plan.units)
    assert plan.window == window


def test_a_window_keeps_whole_objects_whose_bounds_overlap_it():
    chain = a_chain()
    plan = plan_from_manifests(
        selection(window=Window(from_offset=5, to_offset=13)), chain, listing_of(chain)
    )
    assert [o.first_offset for o in plan.units[0].objects] == [0, 12]


def test_a_filter_keeps_objects_with_those_partition_values_and_names_unknown_keys():
    chain = [
        manifest(
            "b1",
            [
                part(
                    "orders",
                    0,
                    0,
                    30,
                    [
                        obj("orders", 0, 0, 9, region="EMEA"),
                        obj("orders", 0, 10, 19, region="APAC"),
                        obj("orders", 0, 20, 29, region="EMEA"),
                    ],
                )
            ],
        )
    ]
    plan = plan_from_manifests(selection(filter=(("region", "EMEA"),)), chain, listing_of(chain))
    assert [o.partition_values for o in plan.units[0].objects] == [{"region": "EMEA"}] * 2
    assert not plan.units[0].check_gaps and not plan.units[0].compare_segments
    with pytest.raises(RestoreFilterError) as error:
        plan_from_manifests(selection(filter=(("country", "DE"),)), chain, listing_of(chain))
    assert (error.value.name, error.value.available) == ("country", ("region",))


def test_partition_selection_restores_only_those_partitions():
    chain = a_chain()
    plan = plan_from_manifests(selection(partitions=(1,)), chain, listing_of(chain))
    assert [u.unit_id for u in plan.units] == ["orders.1"]
    (target,) = plan.targets
    assert (target.partitions_needed, target.partition_count) == (2, 3)
    nothing = plan_from_manifests(selection(partitions=(7,)), chain, listing_of(chain))
    assert nothing.units == () and nothing.targets[0].partitions_needed == 1


def test_murmur2_routes_by_key_and_translates_no_consumer_groups():
    chain = a_chain()
    plan = plan_from_manifests(selection(partitioner="murmur2"), chain, listing_of(chain))
    assert {(u.routing, u.target_partition, u.translate_offsets) for u in plan.units} == {
        ("murmur2", None, ())
    }
    assert plan.notes == (GROUPS_NOT_TRANSLATED,)
    assert plan.consumer_groups == chain[-1].consumer_groups  # still reported; just not translated


def test_without_group_translation_no_offsets_or_groups_are_planned():
    chain = a_chain()
    plan = plan_from_manifests(selection(translate_groups=False), chain, listing_of(chain))
    assert plan.consumer_groups == () and all(u.translate_offsets == () for u in plan.units)


def test_a_backup_that_is_not_lossless_says_so_and_compares_no_digests():
    chain = [manifest("b1", [part("orders", 0, 0, 10, [obj("orders", 0, 0, 9)])], fmt="CSV", lossless=False)]
    plan = plan_from_manifests(selection(), chain, listing_of(chain))
    assert (plan.lossless, plan.envelope, plan.notes) == (False, False, (NOT_LOSSLESS,))
    assert plan.units[0].check_gaps and not plan.units[0].compare_segments


def test_the_envelope_is_only_where_the_format_carries_one():
    chain = [manifest("b1", [part("orders", 0, 0, 10, [obj("orders", 0, 0, 9)])], fmt="CSV", lossless=True)]
    assert plan_from_manifests(selection(), chain, listing_of(chain)).envelope is False


def test_the_plan_holds_the_last_manifests_codec_options_and_one_function_makes_the_context():
    spec = BackupSpec(
        bucket=BUCKET,
        prefix=PREFIX,
        topics=("orders",),
        format=Format.AVRO,
        envelope=EnvelopeOptions(enabled=True, headers=False),
        value_converter="avro",
        compression="zstd",
        compression_level=3,
    )
    *older, last = a_chain()
    chain = [*older, last.model_copy(update={"spec": spec.model_dump(mode="json")})]
    plan = plan_from_manifests(selection(), chain, listing_of(chain))
    assert plan.codec == spec.codec == codec_of(chain[-1])
    assert plan.wire_sides == ("value",)
    context = codec_context(plan.format, plan.codec, "orders", 1, "k")
    assert (context.envelope, context.envelope_headers, context.value_converter) == (True, False, "avro")
    assert (context.compression, context.compression_level, context.object_key) == ("zstd", 3, "k")
    assert codec_context("CSV", plan.codec, "orders", 1).envelope is False  # CSV carries none
    # A spec this version would refuse whole still tells how its objects are encoded.
    partial = last.model_copy(update={"spec": {"format": "AVRO", "key_converter": "avro"}})
    assert codec_of(partial) == CodecOptions(key_converter="avro")


def test_several_topics_restore_into_star_or_one_by_source_topic():
    chain = [
        manifest(
            "b1",
            [
                part("orders", 0, 0, 10, [obj("orders", 0, 0, 9)]),
                part("payments", 1, 0, 10, [obj("payments", 1, 0, 9)]),
            ],
        )
    ]
    listed = listing_of(chain)
    with pytest.raises(UnsupportedRestoreError, match=r"holds topics \['orders', 'payments'\]"):
        plan_from_manifests(selection(), chain, listed)
    every = plan_from_manifests(selection(target_topic="*"), chain, listed)
    assert [(u.unit_id, u.target_topic) for u in every.units] == [
        ("orders.0", "orders"),
        ("payments.1", "payments"),
    ]
    assert [(t.name, t.partitions_needed) for t in every.targets] == [("orders", 1), ("payments", 2)]
    one = plan_from_manifests(selection(source_topic="payments"), chain, listed)
    assert [(u.unit_id, u.target_topic) for u in one.units] == [("payments.1", "copy")]


def test_a_source_topic_no_manifest_commits_is_refused_naming_its_objects():
    chain = a_chain()
    orphan = KeyNaming(prefix=PREFIX, extension="avro").object_key("refunds", 0, 9)
    listed = {**listing_of(chain), orphan: ObjectInfo(orphan, 1)}
    with pytest.raises(BackupIncompleteError) as error:
        plan_from_manifests(selection(source_topic="refunds"), chain, listed)
    assert error.value.keys == (orphan,)
    with pytest.raises(NothingToRestoreError, match=r"backed up: \['orders'\]"):
        plan_from_manifests(selection(source_topic="refunds"), chain, listing_of(chain))


def test_a_chain_of_mixed_formats_or_another_storeas_is_refused():
    chain = a_chain()
    csv = manifest("b3", [part("orders", 0, 30, 40, [obj("orders", 0, 30, 39)])], fmt="CSV")
    with pytest.raises(UnsupportedRestoreError, match="mix formats"):
        plan_from_manifests(selection(), [*chain, csv], listing_of(chain))
    with pytest.raises(UnsupportedRestoreError, match="STOREAS PARQUET"):
        plan_from_manifests(selection(format="PARQUET"), chain, listing_of(chain))
    assert plan_from_manifests(selection(format="avro"), chain, listing_of(chain)).format == "AVRO"


def test_the_preflight_names_every_object_missing_or_not_the_size_the_manifest_says():
    chain = a_chain()
    listed = listing_of(chain)
    gone = chain[0].partitions[1].objects[0].key
    shrunk = chain[1].partitions[0].objects[0].key
    del listed[gone]
    listed[shrunk] = ObjectInfo(shrunk, 1)
    plan = plan_from_manifests(selection(), chain, listed)  # discovery does not look: the pre-flight does
    with pytest.raises(PreflightError) as error:
        preflight(None, plan, listed, "quick")
    assert set(error.value.keys) == {gone, shrunk} and error.value.checked == 5
    assert (
        preflight(None, plan, listing_of(chain), "quick")
        == "quick: 5 objects present with the manifest's sizes"
    )
    assert preflight(None, plan, listed, "none") == "none"


# --- from a listing (no manifest) ------------------------------------------------------------


def listed(*keys: str, size: int = 10) -> dict[str, ObjectInfo]:
    return {k: ObjectInfo(k, size) for k in keys}


def test_the_default_layout_restores_each_partition_in_last_offset_order():
    naming = KeyNaming(prefix=PREFIX, extension="json")
    keys = [naming.object_key("orders", p, last) for p in (0, 2) for last in (99, 9, 1000)]
    plan = plan_from_listing(selection(), listed(*keys))
    assert (plan.format, plan.envelope, plan.manifest_format, plan.lossless) == ("JSON", False, False, False)
    assert [u.unit_id for u in plan.units] == ["orders.0", "orders.2"]
    for unit in plan.units:
        assert [o.key.rsplit("/", 1)[-1] for o in unit.objects] == [
            "000000000009.json",
            "000000000099.json",
            "000000001000.json",
        ]
        assert (unit.routing, unit.target_partition, unit.offsets_known) == (
            "preserve",
            unit.source_partition,
            False,
        )
        assert not unit.check_gaps and not unit.compare_segments and all(o.size == 10 for o in unit.objects)
    (target,) = plan.targets
    assert (target.name, target.partitions_needed, target.partition_count) == ("copy", 3, 3)
    assert plan.notes == (VALUE_ONLY_NOTE,)
    assert plan.restore_id == restore_id(selection(), [f"listing:6:{sorted(keys)[-1]}"])
    assert plan.codec.envelope.enabled is False


def test_stream_reactor_partitionby_keys_filter_by_their_values():
    naming = KeyNaming(
        prefix=PREFIX, extension="parquet", partition_names=("region", "year"), include_keys=True
    )
    keys = [
        naming.object_key("orders", 0, 19, ("EMEA", "2023")),
        naming.object_key("orders", 0, 9, ("APAC", "2023")),
        naming.object_key("orders", 0, 29, ("EMEA", "2024")),
        naming.object_key("orders", 1, 5, ("EMEA", "2023")),
    ]
    assert keys[0] == f"{PREFIX}/region=EMEA/year=2023/orders(0_000000000019).parquet"
    plan = plan_from_listing(selection(filter=(("region", "EMEA"), ("year", "2023"))), listed(*keys))
    assert plan.format == "PARQUET"
    assert {u.unit_id: [o.key for o in u.objects] for u in plan.units} == {
        "orders.0": [keys[0]],
        "orders.1": [keys[3]],
    }
    assert plan.units[0].objects[0].partition_values == {"region": "EMEA", "year": "2023"}
    with pytest.raises(RestoreFilterError) as error:
        plan_from_listing(selection(filter=(("country", "DE"),)), listed(*keys))
    assert error.value.available == ("region", "year")


def test_partitions_and_source_topic_select_from_a_listing():
    naming = KeyNaming(prefix=PREFIX, extension="avro")
    keys = [naming.object_key(t, p, 9) for t in ("orders", "payments") for p in (0, 1, 2)]
    with pytest.raises(UnsupportedRestoreError, match=r"holds topics \['orders', 'payments'\]; pick one"):
        plan_from_listing(selection(), listed(*keys))
    plan = plan_from_listing(selection(source_topic="payments", partitions=(0, 2)), listed(*keys))
    assert [u.unit_id for u in plan.units] == ["payments.0", "payments.2"]
    every = plan_from_listing(selection(target_topic="*", partitioner="murmur2"), listed(*keys))
    assert {(u.target_topic, u.routing, u.target_partition) for u in every.units} == {
        ("orders", "round-robin", None),
        ("payments", "round-robin", None),
    }


def test_an_envelope_listing_is_one_stream_routed_by_each_records_metadata():
    naming = KeyNaming(prefix=PREFIX, extension="avro")
    keys = [naming.object_key("orders", p, 9) for p in (0, 1)]
    plan = plan_from_listing(selection(envelope=True), listed(*keys))
    (unit,) = plan.units
    assert (unit.unit_id, unit.source_topic, unit.routing, unit.offsets_known) == (
        "listing",
        None,
        "metadata",
        True,
    )
    assert [o.key for o in unit.objects] == sorted(keys)
    assert plan.envelope and plan.notes == (ENVELOPE_NOTE,)
    assert plan_from_listing(selection(envelope=True, partitioner="murmur2"), listed(*keys)).units[
        0
    ].routing == ("murmur2")
    with pytest.raises(UnsupportedRestoreError, match="name the target topic"):
        plan_from_listing(selection(envelope=True, target_topic="*"), listed(*keys))


def test_an_envelope_in_a_value_only_format_is_ignored():
    keys = [KeyNaming(prefix=PREFIX, extension="csv").object_key("orders", 0, 9)]
    plan = plan_from_listing(selection(envelope=True), listed(*keys))
    assert (plan.format, plan.envelope, plan.units[0].unit_id) == ("CSV", False, "orders.0")


def test_keys_without_topic_or_partition_are_one_stream_in_key_order():
    keys = [f"{PREFIX}/exports/b.txt", f"{PREFIX}/exports/a.txt", f"{PREFIX}/c.txt"]
    plan = plan_from_listing(selection(window=Window(from_offset=3)), listed(*keys))
    (unit,) = plan.units
    assert (unit.unit_id, unit.routing, unit.target_topic) == ("listing", "round-robin", "copy")
    assert [o.key for o in unit.objects] == sorted(keys)
    assert plan.format == "TEXT" and plan.notes == (OFFSET_WINDOW_NOTE, VALUE_ONLY_NOTE)
    with pytest.raises(UnsupportedRestoreError, match="topic/partition keys"):
        plan_from_listing(selection(target_topic="*"), listed(*keys))


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a.avro"], "AVRO"),
        (["a.parquet", "b.PARQUET"], "PARQUET"),
        (["a.json", "b.jsonl"], "JSON"),
        (["a.csv"], "CSV"),
        (["a.text", "b.txt"], "TEXT"),
        (["a.bytes", "b.bin"], "BYTES"),
        (["a.json", "b.avro"], None),  # two formats: which one is not for us to guess
        (["a.dat", "noextension"], None),
        (["a.avro", "b.dat"], "AVRO"),  # unknown extensions do not count
    ],
)
def test_the_format_of_a_listing_is_the_one_its_extensions_name(names, expected):
    keys = [f"{PREFIX}/x/{n}" for n in names]
    assert listing_format(selection(), keys) == expected
    assert listing_format(selection(format="bytes"), keys) == "BYTES"  # STOREAS wins


def test_a_listing_of_no_known_format_is_refused_naming_its_objects():
    keys = [f"{PREFIX}/a.json", f"{PREFIX}/b.avro"]
    with pytest.raises(BackupIncompleteError) as error:
        plan_from_listing(selection(), listed(*keys))
    assert error.value.keys == tuple(sorted(keys)) and "no STOREAS" in error.value.reason


def test_a_selection_matching_nothing_plans_no_units():
    keys = [KeyNaming(prefix=PREFIX, extension="avro").object_key("orders", 0, 9)]
    assert plan_from_listing(selection(partitions=(3,)), listed(*keys)).units == ()
    assert plan_from_listing(selection(source_topic="payments"), listed(*keys)).units == ()


class _HeadOnly:
    """An object store that answers HEAD from a dict of metadata by key, and notes the keys asked."""

    def __init__(self, metadata: dict[str, dict[str, str]]) -> None:
        self.metadata = metadata
        self.heads: list[str] = []

    def head(self, bucket: str, key: str) -> ObjectInfo:
        self.heads.append(key)
        return ObjectInfo(key, 10, metadata=self.metadata.get(key, {}))


def test_our_own_objects_without_a_manifest_are_a_backup_that_never_committed():
    keys = [f"{PREFIX}/orders/0/{n:012d}.avro" for n in range(5)]
    ours = _HeadOnly({keys[1]: {"backup-id": "b1"}})
    with pytest.raises(BackupIncompleteError) as error:
        refuse_uncommitted_backup(ours, BUCKET, PREFIX, listed(*keys))  # type: ignore[arg-type]
    assert (error.value.reason, error.value.keys) == ("no manifest", tuple(keys))
    theirs = _HeadOnly({keys[4]: {"backup-id": "b1"}})  # only the first three are looked at
    refuse_uncommitted_backup(theirs, BUCKET, PREFIX, listed(*keys))  # type: ignore[arg-type]
    assert theirs.heads == keys[:3]


# --- properties ------------------------------------------------------------------------------

partition_objects = st.dictionaries(
    st.tuples(st.sampled_from(["orders", "pay/ments", "ü"]), st.integers(0, 3)),
    st.lists(st.integers(0, 10**9), min_size=1, max_size=6, unique=True),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(
    objects=partition_objects,
    chosen=st.one_of(st.none(), st.sets(st.integers(0, 3)).map(lambda s: tuple(sorted(s)))),
    partitioned=st.booleans(),
)
def test_every_listed_object_of_a_selected_partition_is_in_exactly_one_unit_in_offset_order(
    objects, chosen, partitioned
):
    naming = KeyNaming(
        prefix=PREFIX, extension="avro", partition_names=("region",) if partitioned else (), include_keys=True
    )
    where = {
        naming.object_key(topic, partition, last, ("EMEA",) if partitioned else ()): (topic, partition, last)
        for (topic, partition), lasts in objects.items()
        for last in lasts
    }
    plan = plan_from_listing(selection(target_topic="*", partitions=chosen), listed(*where))
    placed = [(u, o.key) for u in plan.units for o in u.objects]
    assert sorted(key for _, key in placed) == sorted(
        key for key, (_, partition, _) in where.items() if chosen is None or partition in chosen
    )
    for unit, key in placed:
        assert (unit.source_topic, unit.source_partition) == where[key][:2]
    for unit in plan.units:
        lasts = [where[o.key][2] for o in unit.objects]
        assert lasts == sorted(lasts)


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.dictionaries(
        st.integers(0, 3),
        st.lists(st.lists(st.integers(1, 50), min_size=0, max_size=4), min_size=1, max_size=4),
        min_size=1,
    ),
    chosen=st.one_of(st.none(), st.sets(st.integers(0, 3)).map(lambda s: tuple(sorted(s)))),
)
def test_every_object_of_a_chain_is_in_its_partitions_unit_once_in_offset_order(cuts, chosen):
    """`cuts[p][b]`: the sizes of partition p's objects in backup b, each backup starting where the
    previous one ended."""
    backups = max(len(sizes) for sizes in cuts.values())
    ends = dict.fromkeys(cuts, 0)
    chain = []
    for b in range(backups):
        partitions = []
        for p, per_backup in sorted(cuts.items()):
            if b >= len(per_backup):
                continue
            start = offset = ends[p]
            entries = []
            for size in per_backup[b]:
                entries.append(obj("orders", p, offset, offset + size - 1))
                offset += size
            ends[p] = offset
            partitions.append(part("orders", p, start, offset, entries))
        chain.append(manifest(f"b{b:02d}", partitions, partition_count=4))
    plan = plan_from_manifests(selection(partitions=chosen), chain, listing_of(chain))
    expected = {
        o.key: p.partition
        for m in chain
        for p in m.partitions
        for o in p.objects
        if chosen is None or p.partition in chosen
    }
    placed = [(u.source_partition, o.key) for u in plan.units for o in u.objects]
    assert sorted(key for _, key in placed) == sorted(expected)
    assert all(expected[key] == partition for partition, key in placed)
    for unit in plan.units:
        firsts = [o.first_offset for o in unit.objects]
        assert firsts == sorted(firsts)
        assert len(unit.segments) == sum(
            1 for m in chain if m.partition("orders", unit.source_partition or 0)
        )
        assert unit.gaps == ()  # each backup starts where the previous one ended: no hole
