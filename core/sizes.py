"""Sizes as people read them, for tables and reports at every layer."""

from __future__ import annotations


def human_bytes(count: float) -> str:
    """`512 B`, `1.2 KB`, `3.4 MB`, … (powers of 1,000)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
