"""Terminal output for the commands, through rich: progress, tables, sizes. No colours.

Progress goes to stderr, in a fixed number of lines whatever the partition count
(tasks.runtime.overview): on a terminal a live display (a total row and a row per partition with
its bar, records/total, rate, bytes and ETA; past LIVE_ROWS partitions, the least done running
ones only); elsewhere (a pipe, a log file, a CI job) a total line and a line per partition that
moved (past PLAIN_ROWS, the slowest running ones only), every PLAIN_EVERY_S. Tables are rich tables
rendered to plain text at their natural width (never wrapped, whatever the terminal's width), so
what the commands print is the same on a terminal and in a log; a table with a row per partition
is condensed past MANY_ROWS (`long_table`).
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from core.errors import InputError
from tasks.runtime import progress
from tasks.runtime.overview import Condensed, eta, human_bytes, overview
from tasks.runtime.progress import PartitionProgress
from tasks.runtime.run_dir import run_dir

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import ProgressColumn, TaskID

# rich is imported where it is used: building the command line's parser imports this module
# before kbackup starts its temporary Prefect API, and that start should not wait.

PLAIN_EVERY_S = 10.0  # a plain progress line per moving partition this often
POLL_S = 0.5  # how often the run's directory is read
LIVE_ROWS = 12  # the live display's partition rows at most: past that many partitions, the slowest running
PLAIN_ROWS = 5  # the plain lines' partition lines a tick at most, besides the total line

Key = tuple[str, int]


def _is_number(text: str) -> bool:
    return text.replace(".", "").isdigit()


def long_table(
    rows: Sequence[Mapping[str, Any]], short: Condensed | None, where: str, noun: str = "partitions"
) -> str:
    """A table with a row per partition: all of them (`short` None), or the per-topic totals, then
    the rows worth a look under a line saying how many were left out and `where` they all are."""
    if short is None:
        return table(rows)
    return "\n".join(
        [
            table(short.topics),
            "",
            f"The {noun} most worth a look, {len(short.rows)} of {short.of} ({where}):",
            table(short.rows),
        ]
    )


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """`rows` as a rich table in plain text: a header, a rule, one line a row; numbers right-aligned."""
    from rich.box import Box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if not rows:
        return "(nothing)"
    header_rule = Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)  # ASCII, no other lines
    columns = list(columns or rows[0].keys())
    grid = Table(box=header_rule, show_edge=False, pad_edge=False, header_style="", highlight=False)
    for name in columns:
        grid.add_column(name, no_wrap=True)
    for row in rows:
        cells = [str(row.get(c, "")) for c in columns]
        grid.add_row(*(Text(v, justify="right" if _is_number(v) else "left") for v in cells))
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, highlight=False, emoji=False).print(grid)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


class Display(Protocol):
    def update(self, parts: Mapping[Key, PartitionProgress], final: bool = False) -> None: ...

    def stop(self) -> None: ...


class PlainLines:
    """Progress for a log: every `every` seconds, a total line (with more than one partition) —
    partitions done, running and waiting, records, bytes, rate, ETA — and a line per partition that
    moved since its last line — records/total, rate over that time, bytes, ETA; a finished
    partition once more, as done. When more than PLAIN_ROWS partitions moved, only the PLAIN_ROWS
    slowest running ones get a line (the longest remaining at their rate over the last interval)."""

    def __init__(
        self, stream: IO[str], every: float = PLAIN_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream
        self.every = every
        self.clock = clock
        self.started = clock()
        self.next_at = self.started + every
        self.last: dict[Key, tuple[float, int]] = {}
        self.previous: tuple[float, Mapping[Key, PartitionProgress]] = (self.started, {})

    def update(self, parts: Mapping[Key, PartitionProgress], final: bool = False) -> None:
        now = self.clock()
        if final or now < self.next_at:
            return  # at the end the command's report says it all
        self.next_at = now + self.every
        stamp = datetime.now().strftime("%H:%M:%S")
        since, before = self.previous
        self.previous = (now, dict(parts))
        glance = overview(parts, before, now - since, rows=PLAIN_ROWS)
        if len(parts) > 1:
            self.stream.write(f"{stamp} progress total: {glance.describe()}\n")
        moved = [k for k, p in sorted(parts.items()) if k not in self.last or p.records != self.last[k][1]]
        if len(moved) > PLAIN_ROWS:
            for key in sorted(glance.slowest):
                self.last[key] = (now, parts[key].records)
                rate = glance.rates[key]
                self.stream.write(f"{stamp} progress {self.describe(key, parts[key], rate)}\n")
        else:
            for key in moved:
                part = parts[key]
                since, before_records = self.last.get(key, (self.started, 0))
                self.last[key] = (now, part.records)
                rate = (part.records - before_records) / max(now - since, 1e-9)
                self.stream.write(f"{stamp} progress {self.describe(key, part, rate)}\n")
        self.stream.flush()

    @staticmethod
    def describe(key: Key, part: PartitionProgress, rate: float) -> str:
        topic, partition = key
        share = f" ({100 * part.records / part.total:.0f} %)" if part.total else ""
        text = f"{topic}/{partition}: {part.records}/{part.total} records{share}, {human_bytes(part.bytes)}"
        if part.total and part.records >= part.total:
            return f"{text}, done"
        left = eta((part.total - part.records) / rate) if rate > 0 and part.total else "?"
        return f"{text}, {rate:,.0f} records/s, ETA {left}"

    def stop(self) -> None:
        pass


def _columns() -> list[ProgressColumn | str]:
    """A row: name, bar, records/total, records a second, bytes, ETA. Fits 80 columns: the name is shortened
    with an ellipsis, the bar takes what is left."""
    from rich.progress import BarColumn, ProgressColumn, Task, TextColumn
    from rich.table import Column
    from rich.text import Text

    class Records(ProgressColumn):
        def render(self, task: Task) -> Text:
            total = f"{task.total:.0f}" if task.total is not None else "?"
            return Text(f"{task.completed:.0f}/{total}", justify="right")

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{task.speed:,.0f} rec/s" if task.speed else "", justify="right")

    class Eta(ProgressColumn):
        max_refresh = 0.5

        def render(self, task: Task) -> Text:
            return Text("done" if task.finished else f"ETA {eta(task.time_remaining)}")

    return [
        TextColumn(
            "{task.description}",
            table_column=Column(no_wrap=True, overflow="ellipsis", min_width=8, max_width=22),
        ),
        BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=5)),
        Records(table_column=Column(no_wrap=True)),
        Rate(table_column=Column(no_wrap=True, min_width=12, justify="right")),
        TextColumn("{task.fields[size]}", justify="right", table_column=Column(no_wrap=True, min_width=8)),
        Eta(table_column=Column(no_wrap=True, min_width=8)),
    ]


class LiveProgress:
    """Progress for a terminal: a rich Progress with a total row and a row per partition; past
    LIVE_ROWS partitions, a line of counts above the total row (done, running, waiting) and rows for
    the LIVE_ROWS least done running partitions only. While it shows, log lines printed through Python's logging to the same terminal (Prefect's
    console handler's among them) are printed above it instead of through it."""

    def __init__(self, console: Console) -> None:
        from rich.console import RenderableType
        from rich.progress import Progress
        from rich.text import Text

        class WithHeader(Progress):
            header = ""

            def get_renderables(self) -> Iterable[RenderableType]:
                if self.header:
                    yield Text(self.header, no_wrap=True, overflow="ellipsis")
                yield from super().get_renderables()

        self.progress = WithHeader(
            *_columns(),
            console=console,
            expand=True,
            refresh_per_second=4,
            redirect_stdout=True,
            redirect_stderr=True,
        )
        self.total = self.progress.add_task("total", total=None, size="")
        self.rows: dict[Key, TaskID] = {}
        self.rerouted: list[tuple[logging.StreamHandler[Any], IO[str]]] = []
        self.progress.start()
        self._reroute_log_handlers(console.file)

    def _reroute_log_handlers(self, terminal: IO[str]) -> None:
        from rich.file_proxy import FileProxy

        proxy = FileProxy(self.progress.console, terminal)
        handlers = {
            h for name in ["", *logging.root.manager.loggerDict] for h in logging.getLogger(name).handlers
        }
        for handler in handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is terminal:
                self.rerouted.append((handler, handler.stream))
                handler.setStream(proxy)
                if hasattr(getattr(handler, "console", None), "file"):  # Prefect's rich console handler
                    handler.console.file = proxy  # type: ignore[attr-defined]

    def update(self, parts: Mapping[Key, PartitionProgress], final: bool = False) -> None:
        glance = overview(parts, rows=LIVE_ROWS)
        many = len(parts) > LIVE_ROWS
        shown = set(glance.slowest) if many else parts.keys()
        # Rows only for what shows: rich redraws on every row added, and 3,000 rows take seconds.
        for key in self.rows.keys() - shown:
            self.progress.remove_task(self.rows.pop(key))
        for key in sorted(shown):
            part = parts[key]
            if key not in self.rows:
                self.rows[key] = self.progress.add_task(
                    f"{key[0]}/{key[1]}", total=None, completed=part.records, size=""
                )
            self.progress.update(
                self.rows[key], completed=part.records, total=part.total or None, size=human_bytes(part.bytes)
            )
        self.progress.header = (  # type: ignore[attr-defined]
            f"{glance.done}/{glance.partitions} partitions done, {glance.running} running, "
            f"{glance.waiting} waiting; the {len(shown)} least done running:"
            if many
            else ""
        )
        self.progress.update(
            self.total,
            description=f"total ({glance.done}/{len(parts)} partitions)" if parts and not many else "total",
            completed=glance.records,
            total=glance.total or None,
            size=human_bytes(glance.bytes),
        )
        if final:
            self.progress.refresh()

    def stop(self) -> None:
        try:
            self.progress.stop()
        finally:
            for handler, stream in self.rerouted:
                handler.setStream(stream)
                if hasattr(getattr(handler, "console", None), "file"):
                    handler.console.file = stream  # type: ignore[attr-defined]


def _display_for(terminal: bool | None) -> Display:
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    if terminal is None:
        terminal = console.is_terminal and not console.is_dumb_terminal
    return LiveProgress(console) if terminal else PlainLines(sys.stderr, PLAIN_EVERY_S)


@contextmanager
def progress_bar(terminal: bool | None = None) -> Iterator[None]:
    """Show the run's per-partition progress on stderr while the body runs: live on a terminal,
    plain lines every PLAIN_EVERY_S otherwise (`terminal` forces either). The body runs with a run
    directory of its own (tasks.runtime.run_dir): the tasks' progress comes through it, and a stop request
    reaches them through it, from whichever process they run in."""
    with run_dir() as directory:
        progress.reset(directory)
        display = _display_for(terminal)
        with _polled(display, directory):
            yield


@contextmanager
def _polled(display: Display, directory: Path) -> Iterator[None]:
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(POLL_S):
            display.update(progress.snapshot(directory))

    thread = threading.Thread(target=poll, name="kbackup-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        try:
            display.update(progress.snapshot(directory), final=True)
        finally:
            display.stop()


class LocationError(InputError):
    """A command's location argument is not `s3://bucket[/prefix]` (or `bucket:prefix`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(f"expected s3://bucket[/prefix], got {url!r}")


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix` (or `bucket:prefix`) → (bucket, prefix); LocationError if neither."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
    else:
        bucket, _, prefix = url.partition(":")
    if not bucket:
        raise LocationError(url)
    return bucket, prefix.strip("/")
