"""Prefect's terminal log of an expected error (tasks/runtime/log_format.py): one line, no traceback, in
the command line's process and in the task runners' worker processes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest

from tasks.runtime import worker_start
from tasks.runtime.log_format import ExpectedErrorsWithoutTraceback, expected_errors_without_traceback
from tasks.services.errors import BucketNotFoundError

TRACEBACK = "Traceback (most recent call last)"


def _record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:  # noqa: BLE001 - a record of whatever was raised
        return logging.LogRecord(
            "prefect.task_runs", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )


def test_an_expected_error_loses_only_its_traceback() -> None:
    formatter = ExpectedErrorsWithoutTraceback(logging.Formatter("%(levelname)s %(message)s"))
    expected = _record(BucketNotFoundError("bkt", "http://s3"))
    assert formatter.format(expected) == "ERROR failed"
    # Other handlers (the Prefect API's) still get the traceback.
    assert expected.exc_info is not None and expected.exc_text is None
    assert TRACEBACK in logging.Formatter().format(expected)
    assert formatter.format(expected) == "ERROR failed"  # also once another handler cached exc_text
    bug = formatter.format(_record(KeyError("a bug")))
    assert bug.startswith(f"ERROR failed\n{TRACEBACK}") and "KeyError: 'a bug'" in bug


@pytest.fixture
def handlers() -> Iterator[tuple[logging.StreamHandler, logging.Handler]]:
    logger = logging.getLogger("kbackup-test-log-format")
    stream, other = logging.StreamHandler(), logging.NullHandler()
    stream.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(stream)
    logger.addHandler(other)
    try:
        yield stream, other
    finally:
        logger.removeHandler(stream)
        logger.removeHandler(other)


def test_installed_on_terminal_handlers_only_and_once(
    handlers: tuple[logging.StreamHandler, logging.Handler],
) -> None:
    stream, other = handlers
    original = stream.formatter
    expected_errors_without_traceback()
    installed = stream.formatter
    assert isinstance(installed, ExpectedErrorsWithoutTraceback) and installed.inner is original
    assert other.formatter is None
    expected_errors_without_traceback()
    assert stream.formatter is installed  # not wrapped twice


def _log_an_expected_error_and_a_bug() -> None:
    """In a worker: what Prefect's task engine logs when a task fails for good (`exc_info=True`),
    through Prefect's terminal handler."""
    logger = logging.getLogger("prefect.kbackup-test")
    for error in (BucketNotFoundError("bkt", "http://s3"), KeyError("a bug")):
        try:
            raise error
        except Exception as exc:  # noqa: BLE001 - logged as Prefect logs a failed task
            logger.error("Task run failed with exception: %r", exc, exc_info=True)
    for handler in logging.getLogger().handlers:
        handler.flush()


def test_worker_processes_log_expected_errors_without_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    """The process pool's worker start-up (StoppableProcessPool's initializer) installs the
    formatter: a spawned worker prints its own Prefect logs, and the expected error's has no
    traceback while the bug's keeps it."""
    context = multiprocessing.get_context("spawn")
    initargs = (os.getpid(), worker_start.qualified_name(worker_start.expected_errors_in_one_line))
    with ProcessPoolExecutor(
        1, mp_context=context, initializer=worker_start.first, initargs=initargs
    ) as pool:
        pool.submit(_log_an_expected_error_and_a_bug).result(timeout=120)
    err = capfd.readouterr().err
    assert "Task run failed with exception: BucketNotFoundError(" in err, err
    assert "Task run failed with exception: KeyError('a bug')" in err, err
    expected, _, bug = err.partition("KeyError('a bug')")
    assert TRACEBACK not in expected, err
    assert TRACEBACK in bug, err
