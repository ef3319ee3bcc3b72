"""One lister of class folders: ``train --data`` and ``evaluate --folders`` see the same files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.paths import ESC50, esc50_rows
from training.audio_folders import audio_files, class_dirs, class_tree
from training.own_data import read_own_data
from training.readers import DatasetError, read_class_folders, read_class_folders_as_found


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    """dog/ (two clips, one in a sub-folder, a hidden one, a link to an outside folder of one more clip,
    a link back up to dog/ itself and a broken link) and rooster/ (two clips); .trash/ is hidden."""
    rows = {c: [r for r in esc50_rows() if r["category"] == c][:4] for c in ("dog", "rooster")}
    root = tmp_path / "data"
    (root / "dog" / "night").mkdir(parents=True)
    (root / "rooster").mkdir()
    (root / ".trash").mkdir()
    outside = tmp_path / "more_dogs"
    outside.mkdir()
    dog, rooster = rows["dog"], rows["rooster"]
    shutil.copy(ESC50 / "audio" / dog[0]["filename"], root / "dog" / "a.flac")
    shutil.copy(ESC50 / "audio" / dog[1]["filename"], root / "dog" / "night" / "b.flac")
    shutil.copy(ESC50 / "audio" / dog[2]["filename"], outside / "c.flac")
    shutil.copy(ESC50 / "audio" / dog[3]["filename"], root / "dog" / "._a.flac")
    shutil.copy(ESC50 / "audio" / dog[3]["filename"], root / ".trash" / "d.flac")
    (root / "dog" / "linked").symlink_to(outside, target_is_directory=True)
    (root / "dog" / "night" / "up").symlink_to(root / "dog", target_is_directory=True)
    (root / "dog" / "gone.flac").symlink_to(tmp_path / "absent.flac")
    for i, row in enumerate(rooster[:2]):
        shutil.copy(ESC50 / "audio" / row["filename"], root / "rooster" / f"r{i}.flac")
    return root


def test_hidden_names_skipped_linked_folders_followed_once_broken_links_listed(folders: Path) -> None:
    assert [d.name for d in class_dirs(folders)] == ["dog", "rooster"]
    dog = folders / "dog"
    assert audio_files(dog) == [
        dog / "a.flac",
        dog / "gone.flac",
        dog / "linked" / "c.flac",
        dog / "night" / "b.flac",
    ]


def test_train_data_and_evaluate_folders_list_the_same_files(folders: Path) -> None:
    listed = {Path(c.path) for c in read_class_folders_as_found(folders).clips}  # evaluate --folders
    with pytest.raises(DatasetError, match=r"gone\.flac does not exist"):  # the folders reader of configs
        read_class_folders(folders)
    own = read_own_data(folders)
    kept = {Path(c.path) for c in own.clip_set.clips}
    names = ["dog/a.flac", "dog/linked/c.flac", "dog/night/b.flac", "rooster/r0.flac", "rooster/r1.flac"]
    assert kept == {folders / name for name in names}
    assert listed == kept | {folders / "dog" / "gone.flac"}  # the broken link: listed, then left out
    assert own.problems == [
        f"1 unusable file(s) left out, e.g. {folders / 'dog' / 'gone.flac'}: missing file or broken link"
    ]


def test_files_beside_the_class_folders_are_said_alike_by_train_and_evaluate(
    folders: Path, trained_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    """A file directly in DIR (no class), a broken link where a class folder was expected: evaluate --folders
    left them out unsaid; it lists the folder through train --data's code and warns in the same lines. A
    file linked into two classes is refused by both."""
    from streamd.cli import main

    stray = folders / "stray.flac"
    shutil.copy(ESC50 / "audio" / esc50_rows()[0]["filename"], stray)
    (folders / "gone").symlink_to(tmp_path / "no_such_folder", target_is_directory=True)
    said = read_own_data(folders).problems
    assert f"1 file(s) directly in {folders} belong to no class folder; left out, e.g. {stray}" in said
    assert f"{folders / 'gone'}: a broken link where a class folder was expected; left out" in said
    args = ["evaluate", "--checkpoint", str(trained_checkpoint), "--folders", str(folders)]
    assert main([*args, "--cache-dir", str(tmp_path / "c"), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["num_examples"] == 5  # the five readable clips of dog/ and rooster/
    prefix = "streamd: warning: "
    warned = [line.removeprefix(prefix) for line in out.err.splitlines() if line.startswith(prefix)]
    assert [line for line in warned if line in said] == said  # the lister's lines, in its order
    others = [line for line in warned if line not in said]  # and that it scores clips it trained on
    assert len(others) == 1 and "clips scored are clips the checkpoint trained on" in others[0], others
    (folders / "rooster" / "again.flac").symlink_to(folders / "dog" / "a.flac")
    with pytest.raises(DatasetError, match=r"again\.flac is the same file as .*a\.flac \(a link\?\)"):
        read_own_data(folders)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamd: error: ") and "again.flac is the same file as" in err
    assert len(err.splitlines()) == 1


def test_files_beside_the_class_folders_are_counted_and_the_first_named(folders: Path) -> None:
    """The line counted them and named none, unlike every other left-out line (``e.g. PATH``); one lister
    (``class_tree``) says it for ``train --data`` and ``evaluate --folders`` alike."""
    (folders / "notes.txt").write_text("recorded in the garden")
    shutil.copy(ESC50 / "audio" / esc50_rows()[0]["filename"], folders / "loose.flac")
    expected = (
        f"2 file(s) directly in {folders} belong to no class folder; left out, e.g. {folders / 'loose.flac'}"
    )
    assert expected in read_own_data(folders).problems
    assert expected in class_tree(folders)[2]


def test_names_in_the_folder_notes_are_shown_as_every_message_shows_them(tmp_path) -> None:
    """A newline, a backslash or an undecodable byte in a name: one line, each name its own text."""
    from training.audio_folders import empty_class_note, loose_files_note, other_files_note

    (tmp_path / "stray\nA.wav").write_bytes(b"x")
    note = loose_files_note(tmp_path)
    assert note is not None and "\n" not in note and "stray\\nA.wav" in note
    assert "r\\\\x.txt" in other_files_note([tmp_path / "r\\x.txt"])
    assert "em\\xffpty" in empty_class_note(Path(os.fsdecode(bytes(tmp_path) + b"/em\xffpty")))
