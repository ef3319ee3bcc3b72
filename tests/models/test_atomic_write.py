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


def test_keeps_the_replaced_files_permissions_and_gives_a_new_one_opens(tmp_path: Path) -> None:
    """safetensors creates its file 0o600: a checkpoint rewritten in place (``update_extra``) keeps its
    mode, and a new one gets what ``open`` would give (0o666 less the umask)."""
    import os

    import torch
    from safetensors.torch import save_file

    def save(tmp: Path) -> None:
        save_file({"w": torch.zeros(2)}, str(tmp))

    shared = tmp_path / "shared.safetensors"
    shared.write_bytes(b"")
    shared.chmod(0o640)
    write_atomically(shared, save)
    assert shared.stat().st_mode & 0o777 == 0o640
    umask = os.umask(0o027)
    try:
        fresh = write_atomically(tmp_path / "fresh.safetensors", save)
    finally:
        os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o640
