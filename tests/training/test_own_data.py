"""``streamd train --data DIR``: layouts, derived settings, the fixed split, background, resume messages."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models.checkpoint import load_checkpoint
from models.common import FeatureConfig, ModelInfo, Normalization
from models.registry import build_model
from streamd.cli import main
from streamd.events import EventConfig
from tests.support.paths import ESC50, REPO, esc50_rows
from training.background import KINDS, background_wave, with_background
from training.derive import clamp_note, derive_epochs, derive_window, epochs_that_fit, feature_stats
from training.evaluate import waveform_scores
from training.experiment_spec import ExperimentConfigError, parse_experiment
from training.loop import train_model
from training.losses import NO_CLASS, loss_fn, soft_targets
from training.own_data import SPLIT_FOLDS, read_own_data
from training.own_report import describe
from training.readers import DatasetError
from training.resume import ResumeMismatch, interrupted_line
from training.train_config import TrainConfig
from training.trained_clips import copies_note

_spec = importlib.util.spec_from_file_location("make_short_clips", REPO / "scripts" / "make_short_clips.py")
short_clips = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(short_clips)

CLASSES = ("dog", "rooster", "crying_baby")


def _rows(per_class: int) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {c: [] for c in CLASSES}
    for row in esc50_rows():
        if row["category"] in out and len(out[row["category"]]) < per_class:
            out[row["category"]].append(row)
    return out


def _split_folders(root: Path, train: int, test: int, seconds: float = 0.5) -> Path:
    for rows in _rows(train + test).values():
        short_clips.write_split(rows[:train], ESC50 / "audio", root, "train", (seconds, seconds))
        short_clips.write_split(rows[train:], ESC50 / "audio", root, "test", (seconds, seconds))
    return root


@pytest.fixture(scope="module")
def split_data(tmp_path_factory) -> Path:
    return _split_folders(tmp_path_factory.mktemp("own") / "short", train=6, test=2)


def test_split_folders_keep_the_fixed_split(split_data: Path) -> None:
    data = read_own_data(split_data)
    assert data.layout == "split folders" and data.held_out == "test"
    assert data.clip_set.labels == sorted(CLASSES)
    train = {Path(c.path) for c in data.clip_set.clips if c.fold == SPLIT_FOLDS["train"]}
    test = {Path(c.path) for c in data.clip_set.clips if c.fold == SPLIT_FOLDS["test"]}
    assert len(train) == 18 and len(test) == 6 and not train & test
    assert all("/test/" in str(p) for p in test) and all("/train/" in str(p) for p in train)
    assert data.counts()["test"] == {c: 2 for c in CLASSES}


def test_class_folders_carve_a_named_held_out_part(split_data: Path) -> None:
    data = read_own_data(split_data / "train", holdout_frac=0.34)
    assert data.layout == "class folders" and data.held_out == "holdout"
    counts = data.counts()
    assert counts["holdout"] == {c: 2 for c in CLASSES} and counts["train"] == {c: 4 for c in CLASSES}


def test_csv_with_split_column(split_data: Path, tmp_path: Path) -> None:
    files = sorted(split_data.rglob("*.wav"))
    table = tmp_path / "clips.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for p in files:
            w.writerow([str(p), p.parent.name, p.parent.parent.name])
    data = read_own_data(table)
    assert data.layout == "csv" and data.held_out == "test"
    test = [c for c in data.clip_set.clips if c.fold == SPLIT_FOLDS["test"]]
    assert {Path(c.path).parent.parent.name for c in test} == {"test"} and len(test) == 6


def test_labels_spelt_in_nfc_and_nfd_are_one_class(split_data: Path, tmp_path: Path) -> None:
    """A label written composed (NFC) in some CSV rows and decomposed (NFD, as macOS writes names) in
    others is one class, named in NFC; so are two class folders whose names differ only so, for
    ``train --data`` and the ``folders`` reader (``evaluate --folders``) alike."""
    import unicodedata

    from training.usable_clips import read_folders

    nfc, nfd = (unicodedata.normalize(form, "café") for form in ("NFC", "NFD"))
    assert nfc != nfd
    files = sorted((split_data / "train").rglob("*.wav"))
    table = tmp_path / "clips.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for i, p in enumerate(files):
            label = (nfd if i % 2 else nfc) if p.parent.name == "dog" else p.parent.name
            w.writerow([str(p), label])
    data = read_own_data(table)
    assert data.clip_set.labels == sorted([nfc, "crying_baby", "rooster"])
    assert sum(data.counts()["train"].values()) + sum(data.counts()["holdout"].values()) == len(files)
    folders = tmp_path / "folders"
    for name, clips in ((nfc, files[:3]), (nfd, files[3:6]), ("rooster", files[6:9])):
        (folders / name).mkdir(parents=True)
        for clip in clips:
            (folders / name / clip.name).symlink_to(clip)
    assert read_own_data(folders).clip_set.labels == [nfc, "rooster"]
    listed, _ = read_folders({"root": folders, "num_folds": 2})
    assert listed.labels == [nfc, "rooster"]
    cafe = [c for c in listed.clips if c.targets == (0,)]
    assert len(cafe) == 6 and [c.fold for c in cafe] == [1, 2, 1, 2, 1, 2]  # one class, numbered as one
    assert not any("letter case" in p for p in read_own_data(folders).problems)
    (folders / "Rooster").mkdir()  # another case is another class, as the user may not have meant: said
    for clip in files[9:11]:
        (folders / "Rooster" / clip.name).symlink_to(clip)
    data = read_own_data(folders)
    assert data.clip_set.labels == ["Rooster", nfc, "rooster"]
    assert (
        "classes 'Rooster' and 'rooster' differ only in letter case: each is trained as a class of its own"
        in (" ".join(data.problems))
    )


def test_a_class_named_train_is_a_class_and_split_folders_need_train(
    split_data: Path, tmp_path: Path
) -> None:
    """ESC-50 has a class called "train": a folder of that name holding audio (not class folders) is a
    class like its siblings; val/ and test/ of class folders without train/ are one clear error."""
    root = tmp_path / "with_train_class"
    root.mkdir()
    for label in CLASSES:
        (root / label).symlink_to(split_data / "train" / label, target_is_directory=True)
    (root / "train").symlink_to(split_data / "test" / "dog", target_is_directory=True)
    data = read_own_data(root, holdout_frac=0.5)
    assert data.layout == "class folders" and data.clip_set.labels == sorted([*CLASSES, "train"])
    no_train = tmp_path / "no_train"
    no_train.mkdir()
    (no_train / "test").symlink_to(split_data / "test", target_is_directory=True)
    with pytest.raises(DatasetError, match=r"test/ of class folders but no train/ folder"):
        read_own_data(no_train)


def test_a_csv_beside_its_audio_folder(split_data: Path, tmp_path: Path) -> None:
    """DIR/clips.csv naming DIR/audio/*: the CSV is the layout (one folder of audio is no set of classes)."""
    root = tmp_path / "csv_and_audio"
    (root / "audio").mkdir(parents=True)
    with (root / "clips.csv").open("w", newline="") as f:
        w = csv.writer(f)
        for p in sorted((split_data / "train").rglob("*.wav")):
            (root / "audio" / f"{p.parent.name}_{p.name}").symlink_to(p)
            w.writerow([f"audio/{p.parent.name}_{p.name}", p.parent.name])
    data = read_own_data(root)
    assert data.layout == "csv" and data.clip_set.labels == sorted(CLASSES) and len(data.clip_set.clips) == 18


def _linked_splits(split_data: Path, root: Path) -> Path:
    """``root/train`` and ``root/test`` of class folders, the split data's (linked per class)."""
    for split in ("train", "test"):
        for label in CLASSES:
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / split / label).symlink_to(split_data / split / label, target_is_directory=True)
    return root


def test_a_stray_file_in_a_split_folder_is_left_out_not_a_class(split_data: Path, tmp_path: Path) -> None:
    """One audio file beside train/'s class folders had turned the split layout into classes named
    train and test: the split layout stays and the file is left out, said."""
    root = _linked_splits(split_data, tmp_path / "stray")
    (root / "train" / "extra.wav").symlink_to(next((split_data / "train" / "dog").glob("*.wav")))
    data = read_own_data(root)
    assert data.layout == "split folders" and data.clip_set.labels == sorted(CLASSES)
    assert any(
        f"1 file(s) directly in {root / 'train'} belong to no class folder" in p for p in data.problems
    )


def test_split_folders_beside_a_class_folder_are_read_as_classes_and_said(
    split_data: Path, tmp_path: Path
) -> None:
    root = _linked_splits(split_data, tmp_path / "mixed")
    (root / "rooster").mkdir()
    for i, clip in enumerate(sorted((split_data / "test" / "dog").glob("*.wav"))):  # other files, real audio
        wave, rate = sf.read(clip, dtype="float32")
        sf.write(root / "rooster" / f"r{i}.wav", 0.5 * wave, rate)
    data = read_own_data(root, holdout_frac=0.5)
    assert data.layout == "class folders" and set(data.clip_set.labels) == {"rooster", "test", "train"}
    assert any("train/, test/ hold class folders as split folders do" in p for p in data.problems)


def test_a_csv_beside_class_folders_is_said_and_several_csvs_are_refused(
    split_data: Path, tmp_path: Path
) -> None:
    """Class folders with a CSV beside them train as class folders, with a note naming the way to the CSV
    (it had been left out unsaid); several CSVs beside one folder of audio are refused as ambiguous."""
    root = _class_folders(split_data, tmp_path)
    (root / "notes.csv").write_text("path,label\n")
    data = read_own_data(root, holdout_frac=0.34)
    assert data.layout == "class folders" and data.clip_set.labels == sorted(CLASSES)
    assert any("notes.csv beside the class folders: read as class folders" in p for p in data.problems)
    lists = tmp_path / "lists"
    (lists / "audio").mkdir(parents=True)
    (lists / "audio" / "a.wav").symlink_to(next((split_data / "train" / "dog").glob("*.wav")))
    (lists / "a.csv").write_text("audio/a.wav,dog\n")
    (lists / "b.csv").write_text("audio/a.wav,dog\n")
    with pytest.raises(DatasetError, match=r"several CSV files \(a\.csv, b\.csv\): give --data .*a\.csv"):
        read_own_data(lists)


def test_a_csv_header_names_its_columns_in_any_order(split_data: Path, tmp_path: Path) -> None:
    """``file,class`` was read as a row (a missing file) and ``label,path`` as labels named after paths."""
    files = sorted(split_data.rglob("*.wav"))
    for header in (["file", "class", "split"], ["split", "label", "path"], ["Category", "Filename", "Set"]):
        table = tmp_path / f"{'_'.join(header)}.csv"
        with table.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for p in files:
                by_name = {"path": str(p), "label": p.parent.name, "split": p.parent.parent.name}
                aliases = {"file": "path", "filename": "path", "class": "label", "category": "label"}
                w.writerow(
                    [
                        by_name[aliases.get(h.lower(), "split" if h.lower() == "set" else h.lower())]
                        for h in header
                    ]
                )
        data = read_own_data(table)
        assert data.clip_set.labels == sorted(CLASSES) and data.held_out == "test", header
        assert len(data.clip_set.clips) == len(files)
    positional = tmp_path / "species.csv"  # a header starting with path: label and split by position
    positional.write_text(
        "path,species,split\n" + "".join(f"{p},{p.parent.name},{p.parent.parent.name}\n" for p in files)
    )
    assert read_own_data(positional).held_out == "test"
    rows = "".join(f"{p.parent.parent.name},{p},{p.parent.name}\n" for p in files)
    swapped = tmp_path / "swapped.csv"  # named split before an unnamed label column
    swapped.write_text("split,file,species\n" + rows)
    assert read_own_data(swapped).clip_set.labels == sorted(CLASSES)
    indexed = tmp_path / "indexed.csv"  # a pandas index column, unnamed
    indexed.write_text(",path,label\n" + "".join(f"{i},{p},{p.parent.name}\n" for i, p in enumerate(files)))
    assert any("column(s) (unnamed) not read" in p for p in read_own_data(indexed).problems)
    folds = tmp_path / "folds.csv"  # named columns: a column of another meaning is not read, and said
    folds.write_text("path,label,fold\n" + "".join(f"{p},{p.parent.name},1\n" for p in files))
    data = read_own_data(folds)
    assert data.held_out == "holdout" and any("column(s) fold not read" in p for p in data.problems)


def _class_folders(split_data: Path, tmp_path: Path) -> Path:
    """A class-folder layout whose classes are the split data's training folders (linked)."""
    root = tmp_path / "classes"
    root.mkdir()
    for label in CLASSES:
        (root / label).symlink_to(split_data / "train" / label, target_is_directory=True)
    return root


def test_broken_files_and_empty_classes_are_reported(split_data: Path, tmp_path: Path) -> None:
    root = _class_folders(split_data, tmp_path)
    (root / "ghost").mkdir()
    (root / "ghost" / "a.wav").symlink_to(tmp_path / "nowhere.wav")
    (root / "empty").mkdir()
    data = read_own_data(root)
    assert "ghost" not in data.clip_set.labels and "empty" not in data.clip_set.labels
    text = "\n".join(data.problems)
    assert "broken link" in text and "class 'ghost'" in text and "empty: no audio files" in text


def test_a_file_name_with_a_newline_stays_on_its_warnings_one_line(split_data: Path, tmp_path: Path) -> None:
    root = _class_folders(split_data, tmp_path)  # linked classes: the odd file goes in a class of its own
    (root / "odd").mkdir()
    (root / "odd" / "two\nlines.wav").write_text("not audio")
    problems = [p for p in read_own_data(root).problems if "lines.wav" in p]
    assert len(problems) == 1 and "\n" not in problems[0] and "two\\nlines.wav" in problems[0]


def test_data_with_no_usable_file_says_why_in_its_error(split_data: Path, tmp_path: Path) -> None:
    """Every listed file missing gave "no usable audio files" alone: the reason, said only once training
    went ahead, is part of the error now (and of the error when too few are left to hold any out)."""
    listing = tmp_path / "gone.csv"
    listing.write_text("file,label\nmissing1.flac,dog\nmissing2.flac,cat\n")
    with pytest.raises(DatasetError, match=r"no usable audio files \(2 unusable file\(s\) left out, e\.g\. "
                       r".*missing1\.flac: missing file or broken link\)"):  # fmt: skip
        read_own_data(listing)
    clips = sorted((split_data / "train").rglob("*.wav"))
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(f"file,label\n{clips[0]},dog\n{clips[-1]},cat\nmissing.flac,cat\n")
    with pytest.raises(DatasetError, match=r"no class has two usable clips.*\(1 unusable file\(s\) left out"):
        read_own_data(mixed)
    (tmp_path / "a_folder").mkdir()  # a row naming a folder is said to be one, not a missing file
    listing.write_text("file,label\na_folder,dog\nmissing2.flac,cat\n")
    with pytest.raises(DatasetError, match=r"e\.g\. .*a_folder: a folder, not an audio file\)"):
        read_own_data(listing)
    phone = tmp_path / "phone"  # class folders of a format streamd does not read: counted in the error
    for label in ("a", "b"):
        (phone / label).mkdir(parents=True)
        for i in range(3):
            (phone / label / f"{i}.m4a").write_bytes(b"not read")
    with pytest.raises(
        DatasetError, match=r"no audio found: .*\(6 file\(s\) left out: not audio by their ext"
    ):
        read_own_data(phone)


def test_a_held_out_copy_of_a_training_clip_is_counted_in_a_warning(
    split_data: Path, tmp_path: Path, capsys
) -> None:
    """A training clip copied into test/ was scored as held out without a word (``evaluate`` on the same
    folder says the checkpoint trained on it): the run says so before training, as every run does
    (``training.trained_clips.copies_note``)."""
    root = tmp_path / "copied"
    shutil.copytree(split_data, root)
    first = sorted((root / "train").rglob("*.wav"))[0]
    shutil.copy(first, root / "test" / first.parent.name / "copy_of_train.wav")
    for data, copies in ((split_data, 0), (root, 1)):
        own = read_own_data(data)
        held = [Path(c.path) for c in own.clip_set.clips if c.fold == own.held_out_fold]
        note = copies_note(own.training_clips(), held)
        assert (note is None) == (copies == 0)
    assert note is not None and note.startswith("1 of the 7 held-out clip(s) are copies of training clips")
    assert "copy_of_train.wav" in note
    out = tmp_path / "out"
    assert main(["train", "--data", str(root), "--epochs", "1", "--no-progress", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count(note) == 1 and f"streamd: warning: copied: {note}" in err


def test_epochs_of_a_budget_are_kept_within_bounds_and_say_so() -> None:
    """``--minutes`` gives as many epochs as fit, at least 3 and at most 150: where the budget asked for
    fewer or more, the line saying where the epochs came from says so (it was silent)."""
    # 100 examples in batches of 10 at 1 s a step: 10 s an epoch, 90 % of the budget spent training
    assert epochs_that_fit(1.0, 100, 10, 1000.0) == 90 == derive_epochs(1.0, 100, 10, 1000.0)
    assert clamp_note(90, 90) == ""
    assert epochs_that_fit(1.0, 100, 10, 3.0) == 0 and derive_epochs(1.0, 100, 10, 3.0) == 3
    assert clamp_note(0, 3) == "; 0 would fit, raised to the minimum of 3"
    assert epochs_that_fit(1.0, 100, 10, 1e5) == 9000 and derive_epochs(1.0, 100, 10, 1e5) == 150
    assert clamp_note(9000, 150) == "; 9000 would fit, capped at 150"


def test_window_and_statistics_are_derived() -> None:
    assert derive_window([0.3] * 5 + [0.8] * 95) == 0.8
    assert derive_window([0.61] * 10) == 0.7
    assert derive_window([0.1] * 10) == 0.5 and derive_window([30.0] * 10) == 10.0
    rng = np.random.default_rng(0)
    parts = [rng.normal(-8, 5, (n, 4)) for n in (3, 10, 7)]
    mean, std = feature_stats(parts)
    everything = np.concatenate(parts)
    assert mean == pytest.approx(everything.mean()) and std == pytest.approx(everything.std())


def test_no_class_target_is_the_uniform_distribution() -> None:
    y = torch.tensor([2, NO_CLASS])
    target = soft_targets(y, 4, multi_label=False)
    assert target.tolist() == [[0, 0, 1, 0], [0, 0, 0, 0]]
    logits = torch.randn(2, 4)
    uniform = torch.tensor([[0, 0, 1, 0], [0.25] * 4])
    assert loss_fn(logits, target, False, 0.0) == pytest.approx(float(loss_fn(logits, uniform, False, 0.0)))


def test_print_config_is_a_valid_experiment_with_the_fixed_split(split_data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "streamd", "train", "--data", str(split_data), "--epochs", "2"]
    result = subprocess.run(
        [*cmd, "--print-config"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    # stdout is the TOML alone (`--print-config > mine.toml`); what was found and chosen goes to stderr
    assert "window: 0.5 s = 48 frames" in result.stderr and "held out: test" in result.stderr
    assert result.stdout.startswith("# streamd train")
    doc = tomllib.loads(result.stdout)
    assert doc["data"]["folds"] == [1, 3] and doc["data"]["val_folds"] == [3]
    exp = parse_experiment(doc)
    assert exp.normalization.target_frames == 48 and exp.train.background > 0
    assert exp.train.augment.time_mask == 5
    assert "the window: covers 90 % of the clips" in result.stdout
    given = subprocess.run(
        [*cmd, "--window", "0.7", "--print-config"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert "the window: --window 0.7" in given.stdout and "covers 90 %" not in given.stdout
    # paths given relative to the folder it was printed in are written absolute: the TOML runs anywhere
    relative = os.path.relpath(split_data, tmp_path)
    cmd_rel = [*cmd[:5], relative, "--epochs", "2", "--out", "runs/mine", "--print-config"]
    printed = subprocess.run(cmd_rel, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    doc = tomllib.loads(printed.stdout)
    assert doc["data"]["root"] == str(split_data) and doc["experiment"]["output_dir"] == str(
        tmp_path / "runs/mine"
    )


def test_bad_data_folder_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "streamd", "train", "--data", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0 and "no such data folder" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--minutes", "inf", "--minutes must be a positive finite number, got inf"),
        ("--minutes", "nan", "--minutes must be a positive finite number, got nan"),
        ("--window", "inf", "--window must be a positive finite number, got inf"),
        (
            "--window",
            "0.05",
            "--window must be between 0.5 s (the models' smallest input) and 60 s, got 0.05",
        ),
    ],
)
def test_budget_and_window_values_are_one_line_before_the_data_is_read(
    capsys, option: str, value: str, message: str
) -> None:
    from streamd import cli

    assert cli.main(["train", "--data", "/no/such/folder", option, value]) == 2  # refused before the scan
    assert capsys.readouterr().err == f"streamd: error: {message}\n"


def test_an_empty_data_path_is_refused_not_the_current_folder(capsys) -> None:
    from streamd import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--data", ""])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "streamd: error: argument --data: is empty (give a path)"
    )


def _train(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "streamd", "train", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_one_class_or_an_unusable_out_folder_is_one_line_before_training(
    split_data: Path, tmp_path: Path
) -> None:
    one = tmp_path / "one"
    for split in ("train", "test"):
        (one / split).mkdir(parents=True)
        (one / split / "dog").symlink_to(split_data / split / "dog")
    result = _train("--data", one, "--epochs", "1", "--out", tmp_path / "o")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "one class ('dog'): a classifier needs at least two" in result.stderr
    assert not (tmp_path / "o").exists()
    (one / "train" / "cat").mkdir()  # a second class whose only file is no audio: the one class is why
    (one / "train" / "cat" / "x.wav").write_text("x")
    result = _train("--data", one, "--epochs", "1", "--out", tmp_path / "o")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "one class ('dog')" in result.stderr
    assert "(class 'cat': none of its 1 file(s) is usable; left out)" in result.stderr
    nest = tmp_path / "nest"  # the class folders one level down: --data named the folder above them
    (nest / "sounds").mkdir(parents=True)
    for name in ("dog", "rooster"):
        (nest / "sounds" / name).symlink_to(split_data / "train" / name)
    result = _train("--data", nest, "--epochs", "1", "--out", tmp_path / "o")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.strip().endswith(
        "one class ('sounds'): a classifier needs at least two (add clips of the other sounds it should "
        "tell apart; its clips lie in 2 folders (dog, rooster): to make those the classes, --data "
        f"{nest / 'sounds'})"
    )
    result = _train("--data", split_data, "--epochs", "1", "--out", "/proc/streamd_out")  # looks writable
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "streamd: error: --out /proc/streamd_out: cannot create the folder (No such file or directory)"
    ]
    (tmp_path / "taken").write_text("")
    result = _train("--data", split_data, "--epochs", "1", "--out", tmp_path / "taken")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"streamd: error: --out {tmp_path / 'taken'}: exists and is not a folder"
    ]


@pytest.mark.parametrize(("recipe", "live"), [("cnn", " --hop 0.1"), ("recurrent", "")])
def test_the_live_command_printed_after_training_takes_no_option_that_is_warned_about(
    split_data: Path, recipe: str, live: str
) -> None:
    from training.own_report import held_out_report

    data = read_own_data(split_data)
    report = {"accuracy": 1.0, "macro_f1": 1.0, "per_class_accuracy": dict.fromkeys(CLASSES, 1.0)}
    entry = {"checkpoint": "m.safetensors", "train_seconds": 1.0}
    text = held_out_report(report, data, entry, Path("out"), {"recipe": recipe, "window_s": 0.5})
    assert text.splitlines()[-1] == f"run it live: streamd run --checkpoint m.safetensors{live}"
    assert "  accuracy per class (its held-out clips classified right):" in text.splitlines()
    entry["checkpoint"] = "my runs/m.safetensors"  # pasted into a shell as printed
    text = held_out_report(report, data, entry, Path("out"), {"recipe": recipe, "window_s": 0.5})
    assert text.splitlines()[-1] == f"run it live: streamd run --checkpoint 'my runs/m.safetensors'{live}"


def _arrays(data, fold: int, features: FeatureConfig, frames: int) -> tuple[np.ndarray, np.ndarray]:
    from training.cache import cached_fbanks

    clips = [c for c in data.clip_set.clips if c.fold == fold]
    x = cached_fbanks(clips, features, None, frames)
    return x, np.array([c.targets[0] for c in clips], dtype=np.int64)


def _info(data, features: FeatureConfig, frames: int, mean: float, std: float) -> ModelInfo:
    config = {"num_classes": 3, "num_mel_bins": features.num_mel_bins, "channels": [8, 16]}
    return ModelInfo(
        "resnet_cnn", config, list(data.clip_set.labels), features, Normalization(mean, std, frames)
    )


def test_background_target_keeps_scores_low_on_noise(split_data: Path, tmp_path: Path) -> None:
    features = FeatureConfig(num_mel_bins=32)
    data = read_own_data(split_data)
    x, y = _arrays(data, 1, features, 48)
    mean, std = feature_stats(list(x))
    info = _info(data, features, 48, mean, std)
    torch.manual_seed(0)
    model = build_model("resnet_cnn", info.config)
    cfg = TrainConfig(
        epochs=30, batch_size=8, lr=3e-3, warmup_epochs=1, ema_decay=0.9, precision="fp32", background=1.0
    )
    train_model(model, (x, y), None, cfg, info, tmp_path / "bg", progress=False)
    from models.checkpoint import load_checkpoint

    trained, trained_info = load_checkpoint(tmp_path / "bg" / "model.safetensors")
    threshold = EventConfig().threshold
    rng = np.random.default_rng(1)
    for kind in KINDS:
        for level in (-60.0, -40.0):
            wave = background_wave(kind, 3 * 16000, 16000, level, rng)
            scores = waveform_scores(trained, trained_info, wave, hop_s=0.25)
            assert scores.max() < threshold, (kind, level, scores)
    xb, yb = with_background(x, y, 0.5, features)
    assert len(xb) == len(x) + 9 and (yb[len(x) :] == NO_CLASS).all()


def test_resume_is_announced_and_a_changed_config_refused(split_data: Path, tmp_path: Path, capsys) -> None:
    features = FeatureConfig(num_mel_bins=32)
    data = read_own_data(split_data)
    x, y = _arrays(data, 1, features, 48)
    info = _info(data, features, 48, -5.0, 5.0)
    cfg = TrainConfig(epochs=1, batch_size=8, precision="fp32")
    out = tmp_path / "run"
    train_model(build_model("resnet_cnn", info.config), (x, y), None, cfg, info, out, progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("run epoch 1/1 loss") for line in lines)  # not a TTY: a plain line per epoch
    cfg.epochs = 2
    train_model(build_model("resnet_cnn", info.config), (x, y), None, cfg, info, out, progress=False)
    assert "resuming from epoch 1 of 2" in capsys.readouterr().out  # said without progress lines too
    changed = _info(data, features, 48, -6.0, 5.0)
    with pytest.raises(ResumeMismatch, match=r"normalization.mean: -5.0 -> -6.0.*--fresh"):
        train_model(
            build_model("resnet_cnn", changed.config), (x, y), None, cfg, changed, out, progress=False
        )
    cfg.epochs = 3  # other clips with the same settings: not a continuation of this run
    with pytest.raises(ResumeMismatch, match=r"different data \(18 -> 17 training examples\).*--fresh"):
        train_model(
            build_model("resnet_cnn", info.config), (x[1:], y[1:]), None, cfg, info, out, progress=False
        )
    assert "after epoch 2 is saved in" in interrupted_line(out)
    assert "no training state" in interrupted_line(tmp_path / "elsewhere")
    cfg.epochs = 1  # the 2-epoch model there must not be reported as a 1-epoch run
    with pytest.raises(ResumeMismatch, match=r"already trained for 2 epochs, more than the 1 asked for"):
        train_model(build_model("resnet_cnn", info.config), (x, y), None, cfg, info, out, progress=False)
    assert "without --fresh to resume" in interrupted_line(out, fresh=True)
    capsys.readouterr()
    train_model(  # --fresh: the old state is removed at the start, and the run says so
        build_model("resnet_cnn", info.config), (x, y), None, cfg, info, out, resume=False, progress=False
    )
    assert (
        f"starting over (--fresh): the saved training state {out / 'train_state.safetensors'} was removed"
        in (capsys.readouterr().out)
    )
    assert "after epoch 1 is saved in" in interrupted_line(out)


def test_channels_must_be_a_list() -> None:
    from training.experiment_spec import ExperimentConfigError

    doc = {
        "data": {"reader": "esc50", "csv_path": "x.csv", "val_folds": [1]},
        "model": {"arch": "resnet_cnn", "config": {"channels": 64}},
    }
    with pytest.raises(ExperimentConfigError, match=r"model.config.channels: expected a list, got int"):
        parse_experiment(doc)


def test_init_fine_tunes_the_shipped_model_on_own_data(split_data: Path, tmp_path: Path) -> None:
    """``--data DIR --init default``: the model, features and statistics are the checkpoint's, its weights
    start the run, the fine-tuning recipe applies, and the head is re-initialised for the new labels."""
    from audio_core.shipped_models import shipped_model_path
    from models.checkpoint import read_info

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "ft"
    cmd = [sys.executable, "-m", "streamd", "train", "--data", str(split_data), "--init", "default"]
    result = subprocess.run(
        [*cmd, "--epochs", "1", "--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "fine-tuned from default" in result.stdout and "fine-tuning recipe:" in result.stdout
    assert "backbone_lr_scale 1 -> 0.25" in result.stdout
    shipped = read_info(shipped_model_path("default"))
    trained = read_info(out / "model.safetensors")
    assert trained.arch == shipped.arch and trained.features == shipped.features
    assert (trained.normalization.mean, trained.normalization.std) == (
        shipped.normalization.mean,
        shipped.normalization.std,
    )
    assert set(trained.labels) == set(CLASSES)
    assert "head re-initialised (50 labels -> 3 new)" in trained.extra["init"]

    bad = subprocess.run(
        [*cmd, "--recipe", "ast", "--epochs", "1"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert bad.returncode != 0 and "contradicts --init default" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_the_recurrent_recipe_learns_nothing_from_background_clips(split_data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "streamd", "train", "--data", str(split_data), "--recipe", "recurrent"]
    result = subprocess.run(
        [*cmd, "--epochs", "2", "--print-config"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    exp = parse_experiment(tomllib.loads(result.stdout[result.stdout.index("# streamd train") :]))
    # Trained on clips (not streams), so the background examples apply: the "nothing" target is learnt.
    assert exp.arch == "streaming_mamba" and not exp.train.sequences.enabled and exp.train.background > 0


def test_the_epoch_lines_val_scores_clips_as_the_held_out_report_does(
    split_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recurrent model's epoch line scored each held-out clip padded with silence to the window (its
    step after the silence), the report at the clip's own last step, as classify does: "val 0.333" on the
    line, 0.000 in the report. The line scores the clips as the report does (``training.evaluate``)."""
    from training.evaluate import clip_scores
    from training.predict import accuracy

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "rec"
    args = ["train", "--data", str(split_data), "--recipe", "recurrent", "--window", "2", "--epochs", "1"]
    # seed 2: the padded clips scored 0.333 (every one the class of silence), the clips themselves 0.667
    sets = ["train.precision='fp32'", "train.num_threads=1", "model.config.d_model=32", "train.seed=2"]
    assert main([*args, "--out", str(out), "--no-progress", *[x for s in sets for x in ("--set", s)]]) == 0
    line = json.loads((out / "history.json").read_text())[-1]["val_acc"]
    model, info = load_checkpoint(out / "model.safetensors")
    data = read_own_data(split_data)
    held = data.clip_set.subset(folds=[data.held_out_fold])
    assert line == accuracy(clip_scores(model, info, held, None, precision="fp32"), held.targets())


def test_set_overrides_the_derived_settings(split_data: Path, tmp_path: Path) -> None:
    """``--set KEY=VALUE`` applies to what ``--data`` derives (it was silently ignored), and a bad key is
    one line naming it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "streamd", "train", "--data", str(split_data), "--epochs", "2"]
    run = {"capture_output": True, "text": True, "cwd": tmp_path, "env": env, "timeout": 300}
    result = subprocess.run([*cmd, "--set", "train.seed=7", "--print-config"], **run)
    assert result.returncode == 0, result.stderr
    assert "--set: train.seed=7" in result.stderr  # the TOML alone on stdout
    assert parse_experiment(tomllib.loads(result.stdout)).train.seed == 7
    bad = subprocess.run([*cmd, "--set", "train.nope=1", "--print-config"], **run)
    errors = [line for line in bad.stderr.splitlines() if line.startswith("streamd: error:")]
    assert bad.returncode == 2 and len(errors) == 1 and "train.nope: unknown key" in errors[0]
    assert "Traceback" not in bad.stderr and bad.stdout == ""


@pytest.fixture(scope="module")
def small_classes(split_data: Path) -> Path:
    """Class folders of 3 short clips per class (as a user's first try looks)."""
    root = split_data.parent / "small"
    for label in CLASSES:
        (root / label).mkdir(parents=True, exist_ok=True)
        for clip in sorted((split_data / "train" / label).glob("*.wav"))[:3]:
            (root / label / clip.name).symlink_to(clip)
    return root


def test_small_class_folders_hold_out_one_clip_of_each_class(small_classes: Path, tmp_path: Path) -> None:
    """Fewer clips than every 10th: each class of two or more clips still gives its last clip (it gave none,
    and training crashed at the end on the empty held-out split); a single-clip class is named."""
    data = read_own_data(small_classes)
    assert data.held_out == "holdout"
    counts = data.counts()
    assert counts["holdout"] == {c: 1 for c in CLASSES} and counts["train"] == {c: 2 for c in CLASSES}
    held = {Path(c.path).name for c in data.clip_set.clips if c.fold == SPLIT_FOLDS["holdout"]}
    assert held == {sorted(p.name for p in (small_classes / c).iterdir())[-1] for c in CLASSES}
    assert read_own_data(small_classes).clip_set.clips == data.clip_set.clips  # deterministic
    mixed = tmp_path / "mixed"
    for label in CLASSES:
        (mixed / label).mkdir(parents=True)
        keep = 1 if label == "dog" else 2
        for clip in sorted((small_classes / label).iterdir())[:keep]:
            (mixed / label / clip.name).symlink_to(clip.resolve())
    data = read_own_data(mixed)
    assert data.counts()["holdout"] == {"rooster": 1, "crying_baby": 1} and data.counts()["train"]["dog"] == 1
    assert any("class 'dog'" in p and "none held out" in p for p in data.problems)


def test_small_class_folders_train_and_report(small_classes: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "streamd", "train", "--data", str(small_classes), "--out", str(out)]
    run = {"capture_output": True, "text": True, "cwd": tmp_path, "env": env, "timeout": 600}
    shown = subprocess.run([*cmd, "--epochs", "1", "--print-config"], **run)
    assert shown.returncode == 0, shown.stderr
    assert "held out: holdout (3 clips" in shown.stderr  # the summary; the TOML alone on stdout
    assert "the held-out split the report is on (3 clips)" in shown.stdout
    result = subprocess.run([*cmd, "--epochs", "1", "--no-progress"], **run)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and (out / "model.safetensors").is_file()
    assert (out / "eval").is_dir()


def test_one_clip_per_class_is_refused_before_any_work(small_classes: Path, tmp_path: Path) -> None:
    root = tmp_path / "single"
    for label in CLASSES:
        (root / label).mkdir(parents=True)
        clip = sorted((small_classes / label).iterdir())[0]
        (root / label / clip.name).symlink_to(clip.resolve())
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "streamd", "train", "--data", str(root), "--epochs", "1", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 2 and "none can be held out" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "features:" not in result.stdout and not out.exists()


def test_a_file_with_nan_samples_is_left_out_and_counted(split_data: Path, tmp_path: Path) -> None:
    """NaN or infinite samples make a file unusable like any unreadable one: left out, counted, named."""

    root = _class_folders(split_data, tmp_path)
    (root / "rain").mkdir()
    wave = (0.01 * np.sin(np.arange(8000) * 0.3)).astype(np.float32)  # a constant would be silence
    sf.write(str(root / "rain" / "good.wav"), wave, 16000)
    sf.write(str(root / "rain" / "good2.wav"), -wave, 16000)
    wave[4000] = np.nan
    sf.write(str(root / "rain" / "nan.wav"), wave, 16000, subtype="FLOAT")
    (root / "rain" / "notes.wav").write_text("not audio")
    data = read_own_data(root)
    paths = {Path(c.path).name for c in data.clip_set.clips}
    assert "nan.wav" not in paths and {"good.wav", "good2.wav"} <= paths
    (line,) = [p for p in data.problems if "left out" in p and "unusable" in p]
    assert line.startswith("2 unusable file(s) left out")
    assert "nan.wav: the audio holds NaN or infinite samples (at 0.250 s)" in line


def test_set_impossible_features_with_data_is_refused_before_features(
    small_classes: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "streamd", "train", "--data", str(small_classes), "--epochs", "1"]
    result = subprocess.run(
        [*cmd, "--set", "features.num_mel_bins=0", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2 and "features.num_mel_bins must be > 3, got 0" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "features:" not in result.stdout and not (tmp_path / "run").exists()


def test_the_same_minutes_resume_the_saved_run(split_data: Path, tmp_path: Path) -> None:
    """A run started with --minutes resumes with the same --minutes: its epochs and warm-up are the saved
    ones, not re-derived from a fresh timing (the warm-up is part of what its saved state depends on);
    other minutes re-derive the length and keep the warm-up."""
    from training.own_choices import OwnOptions, derive_choices

    data = read_own_data(split_data)
    features = FeatureConfig(num_mel_bins=32)
    opts = OwnOptions(data=split_data, minutes=0.2, cache_dir=tmp_path / "cache")
    first = derive_choices(opts, data, features, None)
    saved = {**first, "epochs": 2, "train": {**first["train"], "warmup_epochs": 0.123}}
    again = derive_choices(opts, data, features, saved)
    assert again["epochs"] == saved["epochs"] and again["train"]["warmup_epochs"] == 0.123
    longer = derive_choices(
        OwnOptions(data=split_data, minutes=5.0, cache_dir=tmp_path / "cache"), data, features, saved
    )
    assert longer["epochs"] > saved["epochs"] and longer["train"]["warmup_epochs"] == 0.123
    assert "warmup_from" in longer and "warmup_from" not in first  # the summary says whose warm-up it is
    assert "warm-up 0.123 (the saved run's)" in describe(longer, features)


def test_epochs_set_are_the_schedule_and_a_second_source_is_refused(split_data: Path, tmp_path: Path) -> None:
    """``--set train.epochs=N`` sizes the run as ``--epochs N`` does (the summary and the warm-up follow
    it); giving both is refused."""
    from training.derive import warmup_epochs
    from training.own_choices import OwnOptions, derive_choices

    data = read_own_data(split_data)
    features = FeatureConfig(num_mel_bins=32)
    opts = OwnOptions(data=split_data, overrides=["train.epochs = 4"], cache_dir=tmp_path / "cache")
    choices = derive_choices(opts, data, features, None)
    assert (choices["epochs"], choices["epochs_from"]) == (4, "--set train.epochs")
    assert choices["train"]["warmup_epochs"] == warmup_epochs(4) and "step_timed" not in choices
    both = OwnOptions(data=split_data, epochs=3, overrides=["train.epochs=2"], cache_dir=tmp_path / "cache")
    with pytest.raises(ExperimentConfigError, match=r"--epochs and --set train\.epochs both given"):
        derive_choices(both, data, features, None)


def test_a_set_batch_size_is_the_one_timed(split_data: Path, tmp_path: Path) -> None:
    """The budget's step is timed as training will run it: a ``--set train.batch_size`` is timed."""
    from training.own_choices import OwnOptions, derive_choices

    data = read_own_data(split_data)
    opts = OwnOptions(
        data=split_data, minutes=0.2, overrides=["train.batch_size=4"], cache_dir=tmp_path / "cache"
    )
    choices = derive_choices(opts, data, FeatureConfig(num_mel_bins=32), None)
    assert choices["epochs_from"].split(";")[0].endswith("per step of 4")  # ; then any bound applied


class _ThreadsSeen(torch.nn.Module):
    """A small real model that notes torch's thread count at each forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.seen: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add(torch.get_num_threads())
        return self.linear(x.mean(dim=1))


def test_the_step_is_timed_on_the_threads_training_will_use(split_data: Path, tmp_path: Path) -> None:
    """``--set train.num_threads=1`` is timed on one thread, as the loop will train (on a loaded 2-core
    machine a 2-thread step timed 4 times a 1-thread one, and the budget trained a fifth of its time);
    torch's own count is restored afterwards, and the schedule's line says which count was timed."""
    from training.derive import time_step_s
    from training.own_choices import OwnOptions, derive_choices

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = _ThreadsSeen()
        time_step_s(model, 2, 8, 4, num_threads=1)
        assert model.seen == {1} and torch.get_num_threads() == 2
        time_step_s(model, 2, 8, 4)  # 0: torch's default, as training leaves it
        assert model.seen == {1, 2}
        data = read_own_data(split_data)
        opts = OwnOptions(
            data=split_data, minutes=0.2, overrides=["train.num_threads=1"], cache_dir=tmp_path / "cache"
        )
        choices = derive_choices(opts, data, FeatureConfig(num_mel_bins=32), None)
        assert "-minute budget on 1 CPU thread at " in choices["epochs_from"]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_window_reason_names_the_bound_that_decided_it() -> None:
    from training.derive import window_reason

    assert window_reason([0.2] * 10) == (
        "raised to the shortest window, 0.5 s; 90 % of the clips last 0.20 s or less"
    )
    assert window_reason([30.0] * 10).startswith("capped at the longest derived window, 10 s")
    assert window_reason([1.0, 2.0, 3.0]) == "90 % of clip durations"


def test_a_clip_under_two_labels_and_a_broken_class_link_are_named(split_data: Path, tmp_path: Path) -> None:
    clip = next((split_data / "train" / "dog").glob("*.wav"))
    table = tmp_path / "clips.csv"
    table.write_text(f"{clip},dog\n{clip},rooster\n")
    with pytest.raises(
        DatasetError, match=r"line 2: .* listed again with another label \('rooster'; first 'dog'\)"
    ):
        read_own_data(table)
    (tmp_path / "loop1.wav").symlink_to(tmp_path / "loop2.wav")  # a link loop: left out, not a crash
    (tmp_path / "loop2.wav").symlink_to(tmp_path / "loop1.wav")
    rows = [
        f"{f},{f.parent.name}"
        for name in ("dog", "rooster")
        for f in (split_data / "train" / name).glob("*.wav")
    ]
    table.write_text("\n".join([*rows, f"{tmp_path / 'loop1.wav'},dog"]) + "\n")
    assert any("loop1.wav" in problem for problem in read_own_data(table).problems)
    for split in ("test", "train"):  # in both splits a training clip would be scored as held out
        relative = clip.relative_to(split_data)
        table.write_text(f"{clip},dog,train\n{split_data}/./{relative},dog,{split}\n")
        with pytest.raises(DatasetError, match=r"line 2: .* is listed again \(first on line 1\): one row"):
            read_own_data(table)
    root = _class_folders(split_data, tmp_path)
    (root / "gone").symlink_to(tmp_path / "no_such_folder", target_is_directory=True)
    data = read_own_data(root)
    assert any("gone: a broken link where a class folder was expected" in p for p in data.problems)


def test_a_file_linked_twice_in_folders_is_refused_as_in_a_csv(split_data: Path, tmp_path: Path) -> None:
    """Class or split folders holding one file twice (a link) would count a training clip twice or hold
    it out too: refused in one line, as a CSV listing it twice is."""
    root = tmp_path / "layout"
    for split in ("train", "test"):
        for label in CLASSES:
            (root / split / label).mkdir(parents=True)
            for clip in (split_data / split / label).glob("*.wav"):
                (root / split / label / clip.name).symlink_to(clip)
    trained = next((root / "train" / "dog").glob("*.wav"))
    read_own_data(root)  # as made: one file per clip
    (root / "test" / "dog" / "again.wav").symlink_to(trained.resolve())
    with pytest.raises(DatasetError, match=r"again\.wav is the same file as .*: one file per clip"):
        read_own_data(root)
    classes = _class_folders(split_data, tmp_path)
    (classes / "rooster_too").mkdir()
    (classes / "rooster_too" / "dogs").symlink_to(split_data / "train" / "dog", target_is_directory=True)
    with pytest.raises(DatasetError, match=r"is the same file as"):
        read_own_data(classes)


def test_files_left_out_for_their_extension_or_place_are_counted(split_data: Path, tmp_path: Path) -> None:

    root = tmp_path / "classes"
    for label in CLASSES:
        (root / label).mkdir(parents=True)
        for clip in (split_data / "train" / label).glob("*.wav"):
            (root / label / clip.name).symlink_to(clip)
    wave, rate = sf.read(next((split_data / "train" / "dog").glob("*.wav")), dtype="float32")
    sf.write(root / "dog" / "more.w64", wave, rate, format="W64")  # libsndfile's: audio, kept
    (root / "dog" / "notes.txt").write_text("recorded in the garden")
    sf.write(root / "loose.wav", wave, rate)
    data = read_own_data(root)
    assert any(Path(c.path).name == "more.w64" for c in data.clip_set.clips)
    text = "\n".join(data.problems)
    assert "1 file(s) left out: not audio by their extension (e.g." in text and "notes.txt" in text
    assert f"1 file(s) directly in {root} belong to no class folder; left out" in text
    splits = tmp_path / "splits"  # split folders: beside them, and beside a split's class folders
    for split in ("train", "test"):
        for label in CLASSES:
            (splits / split / label).mkdir(parents=True)
            for clip in (split_data / split / label).glob("*.wav"):
                (splits / split / label / clip.name).symlink_to(clip)
    sf.write(splits / "stray.wav", wave, rate)
    (splits / "train" / "labels.txt").write_text("dog rain rooster")  # (audio here: a class named train)
    text = "\n".join(read_own_data(splits).problems)
    for folder in (splits, splits / "train"):
        assert f"1 file(s) directly in {folder} belong to no class folder; left out" in text


def test_a_refused_rerun_leaves_the_saved_choices_as_they_were(split_data: Path, tmp_path: Path) -> None:
    """``choices.json`` keeps the saved run's length: a rerun refused (another window) must not rewrite it,
    or the original command would no longer resume the same run."""
    from training.own_train import CHOICES_FILE, OwnOptions, run_own_data

    out = tmp_path / "run"
    base = {"data": split_data, "out": out, "cache_dir": tmp_path / "cache", "progress": False}
    run_own_data(OwnOptions(**base, epochs=1))
    saved = (out / CHOICES_FILE).read_text()
    with pytest.raises(ResumeMismatch):
        run_own_data(OwnOptions(**base, epochs=2, window_s=0.3))
    assert (out / CHOICES_FILE).read_text() == saved


def test_mode_with_data_is_refused(split_data: Path, capsys) -> None:
    from streamd.cli import main

    assert main(["train", "--data", str(split_data), "--mode", "cv", "--epochs", "1"]) == 2
    assert capsys.readouterr().err == (
        "streamd: error: --mode is for CONFIG.toml; --data trains one model and reports held-out clips\n"
    )


def test_an_init_models_window_is_not_kept_in_the_derived_config(split_data: Path, tmp_path: Path) -> None:
    """``--init ast`` on clips of another length: the model is built for this data's window, and the
    derived config says so (it said the shipped model's 498 frames)."""
    from training.own_choices import OwnOptions, derive_choices
    from training.own_init import init_info

    data = read_own_data(split_data)
    init = init_info("ast", None)
    opts = OwnOptions(data=split_data, init="ast", epochs=1, cache_dir=tmp_path / "cache")
    choices = derive_choices(opts, data, init.features, None, init)
    assert "target_frames" not in choices["model_config"] and choices["frames"] != 498


def test_an_output_inside_the_data_folder_is_refused(split_data: Path, tmp_path: Path) -> None:
    """Its files would be read as data by the next run."""
    from training.own_choices import OwnOptions
    from training.own_train import run_own_data

    root = _class_folders(split_data, tmp_path)
    with pytest.raises(
        DatasetError, match=r"^--out .*/classes/runs/x is inside the data folder .*give an --out"
    ):
        run_own_data(OwnOptions(data=root, out=root / "runs" / "x", epochs=1, cache_dir=tmp_path / "cache"))
    assert not (root / "runs").exists()


def test_an_unwritable_feature_cache_is_one_line_before_any_work(split_data: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / ".cache").write_text("not a folder")
    result = subprocess.run(
        [sys.executable, "-m", "streamd", "train", "--data", str(split_data), "--epochs", "1"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2 and result.stderr.startswith("streamd: error: the feature cache")
    assert len(result.stderr.splitlines()) == 1 and not (work / "runs").exists()


def test_a_recurrent_runs_short_clips_reach_its_steps_with_their_own_length(
    split_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recurrent model trained on a clip shorter than the window learned its label on the silence it was
    padded with (its last steps), while classify scores such a file at its last real step: its own short
    training clips were then misclassified, and silence scored as their class. Each training window's
    frames of audio now reach the clip step (``training.short_clips`` trains on the clip's own last
    steps), the padding of a short clip left out."""
    from streamd.cli import main
    from training import experiment

    data = tmp_path / "data"
    shutil.copytree(split_data, data, symlinks=True)
    clip = sorted((data / "train" / "dog").glob("*.wav"))[0]
    wave, rate = sf.read(str(clip), dtype="float32")
    clip.unlink()
    sf.write(clip, wave[: int(0.3 * rate)], rate)
    seen: dict[str, np.ndarray] = {}
    real_train = experiment.train_model

    def spy(*args, **kwargs):
        seen["real_frames"] = kwargs["real_frames"]
        return real_train(*args, **kwargs)

    monkeypatch.setattr(experiment, "train_model", spy)
    argv = ["--data", str(data), "--recipe", "recurrent", "--window", "0.5", "--epochs", "1"]
    assert main(["train", *argv, "--no-progress", "--out", str(tmp_path / "out")]) == 0
    frames = seen["real_frames"]
    assert frames.max() == 48 and 28 in frames  # 0.5-s windows of 48 frames; the 0.3-s clip has 28
    assert (frames < 48).sum() == 1  # the training clips are 5 s long: windows spread over each
