"""One error family: every exception class the packages define derives from core.errors'
KbackupError through its layer's base, there is one CorruptObjectError, and the command line says
an expected error in one message with exit code 2 (bad input) or 1 (a failed run), never with a
traceback, while anything else (a bug) keeps its traceback."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from core import errors as core
from kbackup.cli import EXIT_BAD_INPUT, EXIT_FAILED, exit_code_of, main, report_error, run_handler

PACKAGES = ("core", "kcql", "formats", "layout", "tasks", "flows", "kbackup")


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        path = importlib.import_module(package).__path__
        names += [m.name for m in pkgutil.walk_packages(path, prefix=f"{package}.")]
    return names


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every public exception class, by where it is defined."""
    found: dict[str, type[BaseException]] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not attr.startswith("_")
            ):
                found[f"{name}.{attr}"] = value
    return found


def test_every_exception_class_derives_from_the_one_root() -> None:
    classes = _exception_classes()
    assert "tasks.services.errors.StorageAccessError" in classes and "kcql.errors.KcqlError" in classes
    outside = sorted(name for name, cls in classes.items() if not issubclass(cls, core.KbackupError))
    assert outside == []


def test_every_error_has_exactly_one_layer_or_is_a_run_outcome() -> None:
    layers = (
        core.LanguageError,
        core.FormatError,
        core.StorageError,
        core.KafkaError,
        core.RegistryError,
        core.BackupError,
    )
    for name, cls in _exception_classes().items():
        if name.startswith("core.") or cls.__name__ == "RunInterrupted":
            continue
        # The command front's own bad arguments (an s3:// location, a deployment's name, an RPO)
        # are InputErrors of no pipeline layer.
        if name.startswith("kbackup.") and issubclass(cls, core.InputError):
            continue
        own = [layer.__name__ for layer in (*layers, core.RestoreError) if issubclass(cls, layer)]
        # A corrupt object is both: a codec finds it (format) and a restore refuses it (restore).
        expected = 2 if cls.__name__ == "CorruptObjectError" else 1
        assert len(own) == expected, (name, own)


def test_each_package_keeps_its_own_base() -> None:
    from formats.errors import FormatError
    from kcql.errors import KcqlError, KcqlSyntaxError, KcqlValueError
    from kcql.java_dates import JavaPatternError
    from kcql.properties import PropertyProblem
    from layout.partition_values import PartitionValueError
    from tasks.restore import errors as restore_errors
    from tasks.runtime.shutdown import RunInterrupted
    from tasks.services import errors as tasks_errors

    assert FormatError is core.FormatError
    assert restore_errors.RestoreError is core.RestoreError
    for cls in (KcqlError, KcqlSyntaxError, KcqlValueError, JavaPatternError, PropertyProblem):
        assert issubclass(cls, core.LanguageError) and issubclass(cls, core.InputError)
    assert issubclass(PartitionValueError, core.FormatError)
    storage = ("BucketNotFoundError", "StorageAccessError", "TransientStorageError", "ObjectConflictError")
    kafka = (
        "BrokerUnavailableError",
        "KafkaOperationError",
        "KafkaAuthenticationError",
        "TopicNotFoundError",
    )
    backup = ("ManifestError", "VerificationError", "LockTimeoutError", "LockLostError")
    for names, layer in ((storage, core.StorageError), (kafka, core.KafkaError), (backup, core.BackupError)):
        for name in names:
            assert issubclass(getattr(tasks_errors, name), layer), name
    assert issubclass(restore_errors.PreflightError, core.RestoreError)
    assert issubclass(RunInterrupted, core.KbackupError)


def test_what_was_a_value_error_still_is() -> None:
    """Callers (pydantic validators among them) that catch ValueError keep seeing these."""
    from formats.errors import CorruptObjectError, UnsupportedValueError
    from kcql.errors import KcqlError
    from kcql.java_dates import JavaPatternError
    from kcql.properties import PropertyProblem
    from layout.partition_values import PartitionValueError

    for cls in (
        KcqlError,
        JavaPatternError,
        PropertyProblem,
        PartitionValueError,
        core.FormatError,
        CorruptObjectError,
        UnsupportedValueError,
    ):
        assert issubclass(cls, ValueError), cls


def test_only_what_a_retry_can_fix_is_retryable() -> None:
    from formats.errors import CorruptObjectError
    from tasks.services.errors import (
        BrokerUnavailableError,
        KafkaOperationError,
        StorageAccessError,
        TransientStorageError,
        is_retryable,
    )

    assert is_retryable(BrokerUnavailableError("b:9092", "down"))
    assert is_retryable(TransientStorageError("PutObject", "bkt", "k", "http://s3", "SlowDown"))
    assert is_retryable(KafkaOperationError("commit", "timed out", retryable=True))
    assert not is_retryable(KafkaOperationError("commit", "fenced"))
    assert not is_retryable(StorageAccessError("PutObject", "bkt", "k", "http://s3", "AccessDenied"))
    assert not is_retryable(CorruptObjectError("bkt", "k", "bad"))
    assert not isinstance(CorruptObjectError("bkt", "k", "bad"), core.Retryable)


def test_one_corrupt_object_error_for_codecs_and_restores() -> None:
    import formats
    import tasks.restore.errors
    from formats.errors import CorruptObjectError

    assert tasks.restore.errors.CorruptObjectError is CorruptObjectError is formats.CorruptObjectError
    from_codec = CorruptObjectError("p/t/0/000000000010.avro", 3, "truncated")
    assert (from_codec.key, from_codec.object_key, from_codec.record_index) == (
        "p/t/0/000000000010.avro",
    ) * 2 + (3,)
    assert from_codec.bucket is None and from_codec.reason == "truncated"
    assert str(from_codec) == "object p/t/0/000000000010.avro is corrupt at record 3: truncated"
    assert str(CorruptObjectError(None, 0, "x")) == "object (unnamed) is corrupt at record 0: x"
    from_bucket = CorruptObjectError("bkt", "p/t/0/000000000010.avro", "12 bytes, the manifest says 13")
    assert (from_bucket.bucket, from_bucket.key, from_bucket.record_index) == (
        "bkt",
        "p/t/0/000000000010.avro",
        None,
    )
    assert str(from_bucket) == "s3://bkt/p/t/0/000000000010.avro is corrupt: 12 bytes, the manifest says 13"
    for error in (from_codec, from_bucket):
        assert isinstance(error, core.FormatError) and isinstance(error, core.RestoreError)


def test_exit_codes_of_the_layers() -> None:
    from kbackup.console import LocationError
    from kcql.errors import KcqlSyntaxError
    from layout.restore.errors import NothingToRestoreError
    from tasks.services.errors import BucketNotFoundError, KafkaOperationError

    assert exit_code_of(KcqlSyntaxError("INSERT", 6, "INTO", "end of input")) == EXIT_BAD_INPUT == 2
    assert exit_code_of(LocationError("s3://")) == EXIT_BAD_INPUT
    for failed in (
        BucketNotFoundError("bkt", "http://s3"),
        KafkaOperationError("commit", "fenced"),
        NothingToRestoreError("bkt", "p", "no objects"),
        core.FormatError("unknown format 'X'"),
    ):
        assert exit_code_of(failed) == EXIT_FAILED == 1


def test_an_expected_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from tasks.services.errors import BucketNotFoundError

    code = report_error("backup", BucketNotFoundError("bkt", "http://s3"), "the backup failed: ")
    assert code == 1
    assert (
        capsys.readouterr().err
        == "kbackup backup: the backup failed: bucket 'bkt' does not exist at http://s3\n"
    )


def _raises(error: BaseException) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        raise error

    return handler


def test_the_command_line_reports_expected_errors_and_lets_bugs_through(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tasks.services.errors import ManifestError

    failed = argparse.Namespace(
        command="ls", handler=_raises(ManifestError("bkt", "p/_manifests/1.json", "bad"))
    )
    assert run_handler(failed) == 1
    assert capsys.readouterr().err == "kbackup ls: manifest s3://bkt/p/_manifests/1.json: bad\n"
    bug = argparse.Namespace(command="ls", handler=_raises(KeyError("a bug")))
    with pytest.raises(KeyError):
        run_handler(bug)


def test_a_bad_location_exits_2_before_anything_is_contacted(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "s3://"]) == 2
    assert capsys.readouterr().err == "kbackup ls: expected s3://bucket[/prefix], got 's3://'\n"


def _installed(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("kbackup")
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_the_installed_command_says_bad_input_without_a_traceback(tmp_path: Path) -> None:
    kcql = _installed("kcql", "check", "INSERT INTO bkt SELECT * FROM t STORE AVRO", cwd=tmp_path)
    assert kcql.returncode == 2, kcql.stderr
    assert kcql.stderr.startswith("KCQL error at line 1, column 33: expected ")
    assert "^" in kcql.stderr and "Traceback" not in kcql.stderr

    bad = _installed("ls", ":prefix", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr == "kbackup ls: expected s3://bucket[/prefix], got ':prefix'\n"
