"""One fact, one place: each format's extension, compressions and envelope support are its
codec's (formats.registry); kcql/ and the restore's discovery read them from there."""

from __future__ import annotations

import pytest

from formats.registry import CODECS, EXTENSIONS, format_of_extension, supports_envelope
from kcql import Format, parse_backup
from kcql.properties import compression_allowed


def test_the_kcql_format_names_are_the_codecs():
    assert [f.value for f in Format] == list(CODECS)


@pytest.mark.parametrize("fmt", list(Format))
def test_kcql_reads_extension_and_compressions_from_the_codec(fmt):
    spec = CODECS[fmt.value].spec
    assert fmt.codec_spec is spec
    assert (fmt.extension, fmt.compressions) == (spec.extension, spec.compressions)
    assert compression_allowed(fmt) == spec.compressions


def test_a_compression_the_codec_does_not_have_is_a_kcql_error_listing_the_codecs():
    from kcql import KcqlError

    with pytest.raises(KcqlError) as error:
        parse_backup("INSERT INTO bkt SELECT * FROM t STOREAS AVRO PROPERTIES('compression'='gzip')")
    assert ", ".join(CODECS["AVRO"].spec.compressions) in str(error.value)


def test_every_codec_reads_its_own_extension_and_csv_reads_as_csv():
    for name, codec in CODECS.items():
        expected = "CSV" if name == "CSV_WITHHEADERS" else name
        assert format_of_extension(codec.spec.extension) == expected
        assert format_of_extension(codec.spec.extension.upper()) == expected
    assert {e: EXTENSIONS[e] for e in ("jsonl", "txt", "bin")} == {
        "jsonl": "JSON",
        "txt": "TEXT",
        "bin": "BYTES",
    }
    assert format_of_extension("dat") is None


def test_the_envelope_is_the_binary_and_json_formats():
    assert {name for name in CODECS if supports_envelope(name)} == {"AVRO", "PARQUET", "JSON"}
    assert supports_envelope("avro") and not supports_envelope("ORC")
