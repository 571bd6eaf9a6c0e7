"""Malformed statements: each error names the line, the column and what was expected."""

from __future__ import annotations

import pytest

from kcql import KcqlError, parse_backup, parse_connector_config, parse_restore

B = "INSERT INTO bkt SELECT * FROM t"

CASES = [
    # (text, line, column, expected contains)
    ("", 1, 1, "INSERT"),
    ("SELECT * FROM t", 1, 1, "INSERT"),
    ("INSERT bkt SELECT * FROM t", 1, 8, "INTO"),
    ("INSERT INTO SELECT * FROM t", 1, 13, "a bucket name"),
    ("INSERT INTO bkt FROM t", 1, 17, "SELECT"),
    ("INSERT INTO bkt SELECT a FROM t", 1, 24, "'*'"),
    ("INSERT INTO bkt SELECT * t", 1, 26, "FROM"),
    ("INSERT INTO bkt SELECT * FROM", 1, 30, "a topic name or *"),
    ("INSERT INTO Bad_Bucket SELECT * FROM t", 1, 13, "a bucket name"),
    ("INSERT INTO bkt: SELECT * FROM t", 1, 18, "a prefix"),
    (B + " STORE AVRO", 1, 33, "STOREAS, PARTITIONBY, PROPERTIES or end of statement"),
    (B + " STOREAS", 1, 40, "a format name"),
    (B + " STOREAS AVROO", 1, 41, "a format name"),
    (B + " STOREAS AVRO STOREAS JSON", 1, 46, "each clause at most once"),
    (B + " PARTITIONBY", 1, 44, "a PARTITIONBY field"),
    (B + " PARTITIONBY _kee.a", 1, 45, "a PARTITIONBY field"),
    (B + " PARTITIONBY _date.yyyy-QQ", 1, 45, "a Java date pattern"),
    (B + " PARTITIONBY _header", 1, 45, "a header name"),
    (B + " PARTITIONBY _key.a,", 1, 52, "a PARTITIONBY field"),
    (B + " WITH_FLUSH_COUNT 5", 1, 50, "'='"),
    (B + " WITH_FLUSH_COUNT = x", 1, 52, "a positive integer"),
    (B + " WITH_FLUSH_COUNT = 0", 1, 52, "a positive integer"),
    (
        B + " WITH_FLUSH_COUNT = 5 PROPERTIES('flush.count'=6)",
        1,
        33,
        "either WITH_FLUSH_COUNT or 'flush.count'",
    ),
    (B + " PROPERTIES", 1, 43, "'('"),
    (B + " PROPERTIES(store.envelope=true)", 1, 44, "a quoted property name"),
    (B + " PROPERTIES('store.envelope' true)", 1, 61, "'='"),
    (B + " PROPERTIES('store.envelope'=)", 1, 61, "a string, integer, true or false"),
    (B + " PROPERTIES('store.envelope'=true", 1, 65, "',' or ')'"),
    (B + " PROPERTIES('store.envelop'=true)", 1, 44, "a backup property"),
    (B + " PROPERTIES('store.envelope'='maybe')", 1, 61, "true or false for 'store.envelope'"),
    (B + " PROPERTIES('flush.count'=-3)", 1, 58, "an integer ≥ 1"),
    (B + " PROPERTIES('flush.count'='many')", 1, 58, "an integer ≥ 1 for 'flush.count'"),
    (
        B + " PROPERTIES('restore.from'='2026-01-01')",
        1,
        44,
        "a backup property ('restore.from' is a restore property)",
    ),
    (B + " PROPERTIES('flush.count'=1, 'flush.count'=2)", 1, 61, "each property at most once"),
    (B + " STOREAS AVRO PROPERTIES('compression'='gzip')", 1, 71, "a AVRO compression"),
    (B + " PROPERTIES('store.envelope'=true 'flush.count'=1)", 1, 66, "',' or ')'"),
    (B + " PROPERTIES('x'='unterminated)", 1, 48, "a closing quote"),
    (B + " LIMIT 5 extra", 1, 41, "end of statement"),
    (B + "; INSERT", 1, 40, "INTO"),
    (
        "INSERT INTO bkt\nSELECT *\nFROM t\nSTOREAS\nJSON\nPROPERTIES('flush.size'='x')",
        6,
        25,
        "an integer ≥ 1 for 'flush.size'",
    ),
    (B + " #", 1, 33, "a keyword, name, string or symbol"),
]


@pytest.mark.parametrize(("text", "line", "column", "expected"), CASES)
def test_backup_errors_name_position_and_expectation(
    text: str, line: int, column: int, expected: str
) -> None:
    with pytest.raises(KcqlError) as error:
        parse_backup(text)
    assert (error.value.line, error.value.column) == (line, column), str(error.value)
    assert expected in error.value.expected


def test_restore_errors() -> None:
    with pytest.raises(KcqlError) as error:
        parse_restore("INSERT INTO t SELECT * FROM bkt PARTITIONBY _key")
    assert (error.value.line, error.value.column, error.value.found) == (1, 33, "PARTITIONBY")
    with pytest.raises(KcqlError) as error:
        parse_restore("INSERT INTO t SELECT * FROM bkt PROPERTIES('flush.count'=3)")
    assert "a restore property" in error.value.expected
    with pytest.raises(KcqlError) as error:
        parse_restore("INSERT INTO t SELECT * FROM bkt PROPERTIES('restore.partitions'='a,b')")
    assert "partition numbers" in error.value.expected


def test_rendered_message_has_the_statement_and_a_caret() -> None:
    with pytest.raises(KcqlError) as error:
        parse_backup("INSERT INTO my-bucket:backups SELECT * FROM sales STORE AVRO")
    assert str(error.value) == (
        "KCQL error at line 1, column 51: expected STOREAS, PARTITIONBY, PROPERTIES or end of statement, found 'STORE'\n"
        "INSERT INTO my-bucket:backups SELECT * FROM sales STORE AVRO\n" + " " * 50 + "^"
    )


def test_unknown_property_suggests_the_closest() -> None:
    with pytest.raises(KcqlError) as error:
        parse_backup(B + " PROPERTIES('flush.cont'=1)")
    assert "did you mean 'flush.count'?" in str(error.value)
    assert "store.envelope" in error.value.hint


def test_connector_config_errors_name_the_key() -> None:
    with pytest.raises(KcqlError) as error:
        parse_connector_config("connect.s3.kcql=" + B + "\nvalue.converter=com.example.Nope\n")
    assert error.value.line == 2 and "com.example.Nope" in error.value.found
    with pytest.raises(KcqlError) as error:
        parse_connector_config("connect.s3.kcql=" + B + "\nmystery.key=1\n")
    assert error.value.line == 2 and "mystery.key" in error.value.found
    with pytest.raises(KcqlError) as error:
        parse_connector_config("topics=t\nconnect.s3.kcql=" + B + " STORE AVRO\n")
    assert (error.value.line, error.value.column) == (2, 17 + 32)
