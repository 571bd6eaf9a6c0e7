"""What the commands draw on the terminal (kbackup/console.py): rich tables in plain text, a live
per-partition progress display on a terminal, plain periodic progress lines elsewhere."""

from __future__ import annotations

import io
import logging
import re
import time

import pytest
from rich.console import Console

from kbackup import console
from kbackup.console import LiveProgress, PlainLines, progress_bar, table
from tasks.runtime import progress
from tasks.runtime.progress import PartitionProgress


def test_a_table_keeps_every_cell_on_one_line_with_numbers_right_aligned() -> None:
    long_windows = ", ".join(f"orders/{p}:0-{p * 1000}" for p in range(8))  # wider than 80 columns
    text = table(
        [
            {"backup": "20260101T000000Z-a", "records": 12345, "size": "1.2 MB", "windows": long_windows},
            {"backup": "b2", "records": 7, "size": "", "windows": "orders/0:0-7"},
        ]
    )
    lines = text.splitlines()
    assert len(lines) == 4
    assert re.fullmatch(r"backup +records +size +windows", lines[0])
    assert set(lines[1]) == {"-", " "}  # an ASCII rule under the header, nothing else drawn
    assert re.fullmatch(rf"20260101T000000Z-a +12345 +1\.2 MB +{re.escape(long_windows)}", lines[2])
    assert lines[3].index("7") + 1 == lines[2].index("12345") + len("12345")  # right-aligned
    assert all(line == line.rstrip() for line in lines)
    assert "\x1b" not in text


def test_a_table_takes_its_columns_and_says_when_it_is_empty() -> None:
    rows = [{"a": 1, "b": "x", "c": 2.5}]
    assert table(rows, ["c", "a"]).splitlines()[0].split() == ["c", "a"]
    assert table(rows, ["c", "missing"]).splitlines()[2].split() == ["2.5"]
    assert table([]) == "(nothing)"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_say_each_moving_partition_every_interval() -> None:
    out, clock = io.StringIO(), _Clock()
    lines = PlainLines(out, every=10, clock=clock)
    parts = {("orders", 0): PartitionProgress(0, 1000, 0), ("orders", 1): PartitionProgress(0, 500, 0)}
    lines.update(parts)
    assert out.getvalue() == ""  # nothing before the first interval
    clock.now += 10
    parts = {("orders", 0): PartitionProgress(200, 1000, 20_000), ("orders", 1): PartitionProgress(0, 500, 0)}
    lines.update(parts)
    first = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert first == [
        "progress total: 0/2 partitions done, 1 running, 1 waiting; 200/1500 records (13 %), 20.0 KB, "
        "20 records/s, ETA 1:05",
        "progress orders/0: 200/1000 records (20 %), 20.0 KB, 20 records/s, ETA 0:40",
        "progress orders/1: 0/500 records (0 %), 0 B, 0 records/s, ETA ?",
    ]
    clock.now += 5
    lines.update({**parts, ("orders", 0): PartitionProgress(900, 1000, 90_000)})
    assert len(out.getvalue().splitlines()) == 3  # not yet
    clock.now += 5
    parts = {
        ("orders", 0): PartitionProgress(1000, 1000, 100_000),
        ("orders", 1): PartitionProgress(0, 500, 0),
    }
    lines.update(parts)
    assert [line.split(" ", 1)[1] for line in out.getvalue().splitlines()[3:]] == [
        "progress total: 1/2 partitions done, 0 running, 1 waiting; 1000/1500 records (67 %), 100.0 KB, "
        "80 records/s, ETA 0:06",
        "progress orders/0: 1000/1000 records (100 %), 100.0 KB, done",  # orders/1 did not move
    ]
    clock.now += 10
    lines.update(parts)
    lines.update(parts, final=True)
    # nothing moved: the total line only; the end adds nothing (the report follows)
    assert len(out.getvalue().splitlines()) == 6
    assert re.match(r"\d\d:\d\d:\d\d progress ", out.getvalue())


def test_the_live_display_shows_records_rate_bytes_and_eta_per_partition() -> None:
    terminal = io.StringIO()  # 80 columns wide, as a terminal of unknown size
    logger = logging.getLogger("kbackup-test-console")
    handler = logging.StreamHandler(terminal)  # as Prefect's console handler on the terminal
    logger.addHandler(handler)
    live = LiveProgress(Console(file=terminal, force_terminal=True, width=80, color_system=None))
    try:
        for step in range(1, 4):
            live.update({("orders", 0): PartitionProgress(100 * step, 1000, 5000 * step)})
            time.sleep(0.05)  # rich measures the rate between updates
        assert handler.stream is not terminal  # log lines go above the display meanwhile
        logger.warning("a log line while the display shows")
        live.update({("orders", 0): PartitionProgress(400, 1000, 20_000)}, final=True)
    finally:
        live.stop()
        logger.removeHandler(handler)
    assert handler.stream is terminal
    last = terminal.getvalue().rsplit("\x1b[2K", 1)[-1]  # the display's last drawing
    total, row = (line for line in last.splitlines() if "400/1000" in line)
    assert total.startswith("total (0/1 partitions)")
    assert re.search(r"^orders/0 +[━╸]+ +400/1000 +[\d,]+ rec/s +20\.0 KB ETA \d+:\d\d$", row.rstrip()), row
    assert "a log line while the display shows" in terminal.getvalue()


def test_progress_bar_off_a_terminal_prints_plain_lines_from_the_run_directory(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(console, "PLAIN_EVERY_S", 0.2)
    monkeypatch.setattr(console, "POLL_S", 0.05)
    with progress_bar(terminal=False):
        progress.report_progress("orders", 3, 10, 10, 123)  # done: written at once
        deadline = time.monotonic() + 30
        while "progress orders/3" not in capsys.readouterr().err and time.monotonic() < deadline:
            time.sleep(0.05)
            progress.report_progress("orders", 3, 10, 10, 123)
        assert time.monotonic() < deadline
    out = capsys.readouterr()
    assert out.out == ""


def _many(count: int, step: int) -> dict[tuple[str, int], PartitionProgress]:
    """`count` partitions of 1000 records: a third done, a third waiting, a third part way (those
    with the highest numbers furthest behind)."""
    parts = {}
    for p in range(count):
        records = 1000 if p % 3 == 0 else 0 if p % 3 == 1 else min(999, step * (count - p) // 10 + 1)
        parts[("orders", p)] = PartitionProgress(records, 1000, records * 100)
    return parts


def test_plain_lines_at_3000_partitions_print_a_total_and_the_slowest_few() -> None:
    out, clock = io.StringIO(), _Clock()
    lines = PlainLines(out, every=10, clock=clock)
    for step in range(1, 4):
        clock.now += 10
        lines.update(_many(3000, step))
    printed = out.getvalue().splitlines()
    assert len(printed) <= 3 * (1 + console.PLAIN_ROWS)
    totals = [line for line in printed if " progress total: " in line]
    assert len(totals) == 3
    assert totals[-1].endswith(
        "progress total: 1000/3000 partitions done, 1000 running, 1000 waiting; 1450400/3000000 records "
        "(48 %), 145.0 MB, 14,990 records/s, ETA 1:43"
    )
    last = [line.split(" ", 1)[1] for line in printed[-console.PLAIN_ROWS :]]
    # the slowest running partitions (the longest remaining at their rate), in a few partitions' format
    assert last == [
        "progress orders/2987: 4/1000 records (0 %), 400 B, 0 records/s, ETA 2:46:00",
        "progress orders/2990: 4/1000 records (0 %), 400 B, 0 records/s, ETA 2:46:00",
        "progress orders/2993: 3/1000 records (0 %), 300 B, 0 records/s, ETA 2:46:10",
        "progress orders/2996: 2/1000 records (0 %), 200 B, 0 records/s, ETA 2:46:20",
        "progress orders/2999: 1/1000 records (0 %), 100 B, 0 records/s, ETA ?",  # did not move
    ]


def test_the_live_display_at_3000_partitions_draws_a_fixed_number_of_rows() -> None:
    terminal = io.StringIO()
    live = LiveProgress(Console(file=terminal, force_terminal=True, width=100, color_system=None))
    try:
        live.update(_many(3000, 1))
        live.update(_many(3000, 2), final=True)
    finally:
        live.stop()
    last = terminal.getvalue().rsplit("\x1b[2K", 1)[-1]  # the display's last drawing
    drawn = [line for line in last.splitlines() if line.strip() and not line.startswith("\x1b")]
    assert len(drawn) <= console.LIVE_ROWS + 2, drawn
    assert drawn[0].startswith("1000/3000 partitions done, 1000 running, 1000 waiting; the 12 least done")
    assert drawn[1].startswith("total ")
    # the least done running partitions
    assert sorted(line.split()[0] for line in drawn[2:]) == [f"orders/{p}" for p in range(2966, 3000, 3)]
