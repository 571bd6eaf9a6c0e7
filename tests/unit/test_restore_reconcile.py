"""The decision of tasks.restore.reconcile: a unit alone in its partition resumes after what the
partition holds when a broker's lost marker left its progress a transaction away from it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError

from tasks.restore.committed import _decode
from tasks.restore.reconcile import began_at, reconcile
from tasks.services.errors import KafkaOperationError

STARTS = {"starts": {"1": 7}, "src": 499}


def test_where_a_unit_began_is_its_first_commit_then_the_restores_record_then_unknown():
    assert began_at((500, STARTS), 1, 3) == 7
    assert began_at((0, {}), 1, 3) == 3  # before its first commit: where the restore began there
    assert began_at((0, {"starts": {"0": 5}}), 1, None) is None
    # progress without `starts` (an older version's): the restore's record may be younger than it
    assert began_at((40, {"src": 39}), 1, 3) is None


def test_progress_and_partition_that_agree_stand_without_a_word():
    assert reconcile((500, STARTS), 1, 7, 500, 500) == ((500, STARTS), None)


def test_records_committed_without_their_progress_are_not_produced_again():
    (done, metadata), note = reconcile((5000, STARTS), 1, 7, 5500, 500)
    assert (done, metadata) == (5500, STARTS)
    assert note is not None
    assert "holds 5500 committed records from offset 7" in note and "says 5000" in note
    assert "committed records whose progress offset was not" in note and "resuming after the 5500" in note


def test_progress_committed_without_its_records_produces_them_again():
    (done, _), note = reconcile((5500, STARTS), 1, 7, 5000, 500)
    assert done == 5000
    assert note is not None and "progress whose records were not" in note


def test_a_first_transaction_whose_progress_was_lost_keeps_where_the_unit_began():
    (done, metadata), note = reconcile((0, {}), 1, 7, 40, 40)
    assert (done, metadata) == (40, {"starts": {"1": 7}})
    assert note is not None


def test_more_than_a_transaction_apart_is_not_the_brokers_and_the_progress_stands():
    progress = (5000, STARTS)
    kept, note = reconcile(progress, 1, 7, 5501, 500)
    assert kept == progress
    assert note is not None and "more than one transaction (500 records) apart" in note
    assert "resuming after 5000" in note


def test_a_committed_offset_answered_with_an_error_is_never_taken_as_no_progress():
    loading = SimpleNamespace(
        topic="dst",
        partition=1,
        offset=-1001,
        metadata=None,
        error=KafkaError(KafkaError.COORDINATOR_LOAD_IN_PROGRESS),
    )
    with pytest.raises(KafkaOperationError) as caught:
        _decode("kbackup-restore-x-progress", loading)
    assert caught.value.retryable
    assert "kbackup-restore-x-progress on dst[1]" in str(caught.value)
    assert "COORDINATOR_LOAD_IN_PROGRESS" in str(caught.value)
    refused = SimpleNamespace(**{**vars(loading), "error": KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)})
    with pytest.raises(KafkaOperationError) as caught:
        _decode("g", refused)
    assert not caught.value.retryable
    nothing = SimpleNamespace(**{**vars(loading), "error": None})
    assert _decode("g", nothing) == (0, {})
    at = SimpleNamespace(**{**vars(loading), "error": None, "offset": 40, "metadata": '{"starts":{"1":0}}'})
    assert _decode("g", at) == (40, {"starts": {"1": 0}})
