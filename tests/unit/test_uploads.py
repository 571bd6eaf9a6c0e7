"""A work unit's uploads (tasks/backup/upload.py Uploads): sent on threads while the unit reads
on, never more than the budget of finished objects held at once, failures raised."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tasks.backup.upload import Uploads


class Obj:
    def __init__(self, name: str, size: int) -> None:
        self.key, self.data = name, b"x" * size


def test_objects_are_sent_and_the_budget_holds() -> None:
    gate = threading.Event()
    held: dict[str, int] = {}  # bytes being sent when each object started
    active = 0
    lock = threading.Lock()

    def upload(obj: Any) -> str:
        nonlocal active
        with lock:
            active += len(obj.data)
            held[obj.key] = active
        gate.wait(5)
        with lock:
            active -= len(obj.data)
        return obj.key

    with Uploads(upload, threads=4, budget=250) as uploads:
        first = [uploads.send(Obj(f"o{i}", 100)) for i in range(2)]
        assert uploads.held == 200
        gate.set()  # the third waits for the oldest, over the budget otherwise
        rest = [uploads.send(Obj(f"o{i}", 100)) for i in range(2, 6)]
        big = uploads.send(Obj("big", 1000))  # over the budget alone: sent once the others are done
    assert [f.result() for f in [*first, *rest, big]] == [f"o{i}" for i in range(6)] + ["big"]
    assert max(held[f"o{i}"] for i in range(6)) <= 250  # never past the budget
    assert held["big"] == 1000  # alone


def test_a_failed_upload_is_raised() -> None:
    def upload(obj: Any) -> str:
        if obj.key == "bad":
            raise OSError("refused")
        return obj.key

    with pytest.raises(OSError, match="refused"), Uploads(upload, threads=1, budget=1) as uploads:
        uploads.send(Obj("bad", 10))
        uploads.send(Obj("next", 10))  # waits for the oldest: its failure
