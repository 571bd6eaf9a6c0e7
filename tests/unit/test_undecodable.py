"""A codec's decoding failure, seen by a reader of the bucket, names the object and the record."""

from __future__ import annotations

from formats.errors import CorruptObjectError, undecodable


def test_a_codecs_error_keeps_its_record_and_reason_and_gains_the_bucket():
    error = undecodable("bkt", "p/t/0/9.avro", CorruptObjectError("p/t/0/9.avro", 3, "truncated"), 2)
    assert (error.bucket, error.key) == ("bkt", "p/t/0/9.avro")
    assert str(error) == "s3://bkt/p/t/0/9.avro is corrupt: cannot decode record 3: truncated"


def test_any_other_failure_names_the_first_record_not_decoded():
    error = undecodable("bkt", "k", ValueError("bad varint"), 40)
    assert str(error) == "s3://bkt/k is corrupt: cannot decode record 40: bad varint"
    assert "record 7: KeyError" in str(undecodable("bkt", "k", KeyError(), 7))
