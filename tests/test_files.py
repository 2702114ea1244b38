"""Atomic writes: a failed write leaves the old file and nothing beside it."""

from __future__ import annotations

import pytest

from tinylang.files import atomic_file


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "sub" / "table.txt"
    with atomic_file(path) as tmp:
        tmp.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt  # a job killed mid-write
    assert path.read_text() == "old" and sorted(p.name for p in path.parent.iterdir()) == ["table.txt"]


def test_a_durable_write_can_keep_the_file_it_replaces(tmp_path):
    path, previous = tmp_path / "state.pt", tmp_path / "state.prev.pt"
    for text in ("first", "second"):
        with atomic_file(path, durable=True, previous=previous) as tmp:
            tmp.write_text(text)
    assert path.read_text() == "second" and previous.read_text() == "first"
