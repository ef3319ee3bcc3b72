"""write_atomically: readers see the old file or the new one, never a part; nothing is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.atomic_write import write_atomically


def test_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "weights.safetensors"
    target.write_text("old")
    write_atomically(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.npy"
    target.write_text("complete")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_then_fail)
    assert target.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["state.npy"]


def test_temporary_keeps_the_suffix_and_is_unique(tmp_path: Path) -> None:
    seen: list[Path] = []
    for _ in range(2):
        write_atomically(tmp_path / "x.npy", lambda tmp: (seen.append(tmp), tmp.write_text("x")))
    assert seen[0] != seen[1] and all(p.suffix == ".npy" and p.parent == tmp_path for p in seen)
