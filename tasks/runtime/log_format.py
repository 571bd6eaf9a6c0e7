"""Prefect's terminal log of an expected error: one line, never a traceback.

A task or flow that fails with a core.errors.KbackupError (a missing bucket, a record lacking its
PARTITIONBY field, a corrupt object) is logged by Prefect with its traceback ("Encountered
exception during execution", "Task run failed"). On the terminal that line keeps its message and
loses the traceback; the Prefect API's handler still gets it, and any other exception (a bug)
keeps its traceback everywhere.

Installed by every process that prints Prefect's logs: the command line's (kbackup.cli) and the
task runners' worker processes (tasks.runtime.task_runners), which print their own.
"""

from __future__ import annotations

import logging

from core.errors import KbackupError


class ExpectedErrorsWithoutTraceback(logging.Formatter):
    """A terminal handler's formatter, except that a record of an expected error (a KbackupError)
    keeps its message but loses its traceback, for this handler only."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        if not (record.exc_info and isinstance(record.exc_info[1], KbackupError)):
            return self.inner.format(record)
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def expected_errors_without_traceback() -> None:
    """On this process's terminal log handlers (every StreamHandler, Prefect's console handler
    among them): an expected error is logged in one line, never with a traceback; a bug keeps its.
    Call it once Prefect's logging is set up (importing Prefect does it); calling it again changes
    nothing."""
    loggers = [
        logging.getLogger(),
        *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict)),
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler.formatter, ExpectedErrorsWithoutTraceback
            ):
                handler.setFormatter(ExpectedErrorsWithoutTraceback(handler.formatter or logging.Formatter()))
