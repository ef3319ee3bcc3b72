"""``streamd train --data DIR`` and then ``streamd evaluate --folders DIR``: train's warnings are on stderr
as every command's, and evaluate tells the clips the checkpoint trained on from those it held out."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from models.checkpoint import load_checkpoint, save_checkpoint
from streamd.cli import main
from tests.support.paths import ESC50, REPO, esc50_rows
from training.trained_clips import KEY, record

_spec = importlib.util.spec_from_file_location("make_short_clips", REPO / "scripts" / "make_short_clips.py")
short_clips = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(short_clips)

CLASSES = ("dog", "rooster", "crying_baby")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Class folders ``data3`` of 4 short real clips per class (3 held out: each class's last) and a stray
    file beside them, trained on for one epoch through the CLI; its output and the checkpoint."""
    root = tmp_path_factory.mktemp("held_out")
    rows = [r for c in CLASSES for r in [x for x in esc50_rows() if x["category"] == c][:4]]
    short_clips.write_split(rows, ESC50 / "audio", root, "data3", (0.5, 0.5))
    data = root / "data3"
    shutil.copy(next((data / "dog").glob("*.wav")), data / "stray.wav")
    out, err = io.StringIO(), io.StringIO()
    args = ["train", "--data", str(data), "--epochs", "1", "--no-progress", "--out", str(root / "o1")]
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(out), redirect_stderr(err):
        patch.chdir(root)  # the feature cache is the working folder's
        code = main(args)
    assert code == 0, err.getvalue()
    checkpoint = root / "o1" / "model.safetensors"
    return {
        "data": data,
        "out": root / "o1",
        "checkpoint": checkpoint,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
    }


def test_train_data_warnings_are_on_stderr_as_every_commands(trained: dict) -> None:
    """They were printed on stdout, among the summary, as ``warning: ...``."""
    data = trained["data"]
    stray = data / "stray.wav"
    line = f"streamd: warning: 1 file(s) directly in {data} belong to no class folder; left out, e.g. {stray}"
    assert line in trained["stderr"].splitlines()
    assert "warning" not in trained["stdout"]
    assert "held out: holdout (3 clips, carved from the training clips)" in trained["stdout"]


def test_evaluate_on_the_training_data_warns_and_held_out_scores_what_training_held_out(
    trained: dict, tmp_path: Path, capsys
) -> None:
    """Evaluating a train --data checkpoint on its own folder scored its training clips unsaid: the clips
    it trained on are counted in a warning, and --held-out scores the split the run held out, as its
    report did (also from a copy of the folder: a clip is recognised by its bytes)."""
    data, checkpoint = trained["data"], trained["checkpoint"]
    base = ["evaluate", "--checkpoint", str(checkpoint), "--cache-dir", str(tmp_path / "c"), "--json"]
    assert main([*base, "--folders", str(data)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["num_examples"] == 12
    assert (
        "streamd: warning: 9 of the 12 clips scored are clips the checkpoint trained on: these figures are "
        "not held out (--held-out scores only the 3 it did not train on)"
    ) in out.err.splitlines()
    report_of_training = json.loads((trained["out"] / "eval" / "report.json").read_text())
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    for folder in (data, moved):
        assert main([*base, "--folders", str(folder), "--held-out"]) == 0
        out = capsys.readouterr()
        report = json.loads(out.out)
        assert report["num_examples"] == 3 and "not held out" not in out.err
        assert report["confusion_matrix"] == report_of_training["confusion_matrix"]
        assert "streamd: note: --held-out: 9 clip(s) the checkpoint trained on left out" in out.err
    assert main([*base, "--folders", str(data), "--num-folds", "2"]) == 0  # its folds are not its splits
    assert "fold(s)" not in capsys.readouterr().err


def test_held_outs_note_counts_the_clips_scored_after_unusable_files_are_left_out(
    trained: dict, tmp_path: Path, capsys
) -> None:
    """--held-out announced "scoring 5" where 2 of the 5 were unusable files, and 3 were scored: the note
    now counts the clips scored, after the unusable files were left out (and said so)."""
    data = tmp_path / "with_bad"
    shutil.copytree(trained["data"], data)
    (data / "dog" / "zz_bad.wav").write_text("not audio")
    (data / "rooster" / "zz_empty.wav").write_bytes(b"")
    args = ["evaluate", "--checkpoint", str(trained["checkpoint"]), "--folders", str(data), "--held-out"]
    assert main([*args, "--cache-dir", str(tmp_path / "c"), "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["num_examples"] == 3
    lines = out.err.splitlines()
    note = "streamd: note: --held-out: 9 clip(s) the checkpoint trained on left out; scoring 3"
    assert note in lines
    unusable = next(i for i, line in enumerate(lines) if "2 unusable file(s) left out" in line)
    assert lines.index(note) > unusable


def test_an_older_train_data_checkpoint_is_warned_about_and_held_out_refused(
    trained: dict, tmp_path: Path, capsys
) -> None:
    """A checkpoint that records no list of its clips (an older streamd): a warning naming the data set it
    was trained on; --held-out cannot tell, and says so in one line. The shipped model records its
    ESC-50 clips: none of these excerpts (other bytes) is among them, so --held-out scores them all."""
    model, info = load_checkpoint(trained["checkpoint"])
    del info.extra[KEY]
    older = save_checkpoint(tmp_path / "older.safetensors", model, info)
    shipped = REPO / "streamd" / "default_models" / "default.safetensors"
    base = ["evaluate", "--folders", str(trained["data"]), "--cache-dir", str(tmp_path / "c"), "--json"]
    assert main([*base, "--checkpoint", str(older)]) == 0
    err = capsys.readouterr().err
    assert "trained by streamd train --data on a data set named 'data3' and records no list" in err
    assert main([*base, "--checkpoint", str(older), "--held-out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamd: error: --held-out: the checkpoint records no list of the clips")
    assert len(err.splitlines()) == 1
    assert main([*base, "--checkpoint", str(shipped), "--held-out"]) == 0
    err = capsys.readouterr().err
    assert "--held-out: 0 clip(s) the checkpoint trained on left out; scoring 12" in err, err


def test_evaluate_takes_a_csv_of_clips_as_train_data_does(trained: dict, tmp_path: Path, capsys) -> None:
    """A model trained on a CSV of clips could be scored again only through --print-config and --config:
    ``--folders`` takes such a CSV too, read as ``train --data`` reads it."""
    data = trained["data"]
    listing = tmp_path / "clips.csv"
    rows = [f"{path},{path.parent.name}" for c in CLASSES for path in sorted((data / c).glob("*.wav"))]
    listing.write_text("path,label\n" + "\n".join(rows) + "\n")
    base = ["evaluate", "--checkpoint", str(trained["checkpoint"]), "--cache-dir", str(tmp_path / "c")]
    assert main([*base, "--folders", str(listing), "--held-out", "--json"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    report_of_training = json.loads((trained["out"] / "eval" / "report.json").read_text())
    assert (
        report["num_examples"] == 3 and report["confusion_matrix"] == report_of_training["confusion_matrix"]
    )
    assert "streamd: note: --held-out: 9 clip(s) the checkpoint trained on left out; scoring 3" in out.err
    # an older checkpoint (no list of its clips) of train --data on that CSV records its stem: warned too
    model, info = load_checkpoint(trained["checkpoint"])
    del info.extra[KEY]
    info.extra["dataset"] = "clips"
    older = save_checkpoint(tmp_path / "older.safetensors", model, info)
    cache = ["--cache-dir", str(tmp_path / "c")]
    assert main(["evaluate", "--checkpoint", str(older), *cache, "--folders", str(listing)]) == 0
    assert "on a data set named 'clips' and records no list" in capsys.readouterr().err


def test_evaluate_reads_split_folders_as_train_data_does(trained: dict, tmp_path: Path, capsys) -> None:
    """train/ and test/ folders of class folders were read as two classes named train and test: they are
    read as train --data reads them, so --held-out scores the clips training held out."""
    data, split = trained["data"], tmp_path / "split"
    for c in CLASSES:
        files = sorted((data / c).glob("*.wav"))
        for part, chosen in (("train", files[:-1]), ("test", files[-1:])):  # each class's last held out
            (split / part / c).mkdir(parents=True)
            for f in chosen:
                shutil.copy(f, split / part / c / f.name)
    base = ["evaluate", "--checkpoint", str(trained["checkpoint"]), "--cache-dir", str(tmp_path / "c")]
    assert main([*base, "--folders", str(split), "--held-out", "--json"]) == 0
    out = capsys.readouterr()
    report_of_training = json.loads((trained["out"] / "eval" / "report.json").read_text())
    assert json.loads(out.out)["confusion_matrix"] == report_of_training["confusion_matrix"]
    assert "streamd: note: --held-out: 9 clip(s) the checkpoint trained on left out; scoring 3" in out.err
    assert main([*base, "--folders", str(split)]) == 0
    assert "9 of the 12 clips scored are clips the checkpoint trained on" in capsys.readouterr().err
    assert main([*base, "--folders", str(split), "--num-folds", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamd: error: --num-folds: ") and "holds split folders" in err


def test_held_out_of_a_csv_with_val_and_test_rows_scores_the_reports_clips(
    trained: dict, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A CSV with val and test rows: the run trains on train and reports on test, setting val aside;
    ``evaluate --held-out`` scored val and test (6 clips against the report's 3): it scores the report's
    clips, the val ones left out in a note."""
    data = trained["data"]
    rows = ["path,label,split"]
    for c in CLASSES:
        files = sorted((data / c).glob("*.wav"))
        rows += [
            f"{f},{c},{split}" for f, split in zip(files, ("train", "train", "val", "test"), strict=True)
        ]
    listing = tmp_path / "clips.csv"
    listing.write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    args = ["train", "--data", str(listing), "--epochs", "1", "--no-progress", "--out", str(tmp_path / "o")]
    with redirect_stdout(out), redirect_stderr(err):
        assert main(args) == 0, err.getvalue()
    assert "held out: test (3 clips)" in out.getvalue()
    report_of_training = json.loads((tmp_path / "o" / "eval" / "report.json").read_text())
    checkpoint = tmp_path / "o" / "model.safetensors"
    base = ["evaluate", "--checkpoint", str(checkpoint), "--folders", str(listing), "--json"]
    assert main([*base, "--held-out"]) == 0
    got = capsys.readouterr()
    report = json.loads(got.out)
    assert report["num_examples"] == 3 == report_of_training["num_examples"]
    assert report["confusion_matrix"] == report_of_training["confusion_matrix"]
    assert "streamd: note: --held-out: 3 clip(s) its training run set aside" in got.err
    assert "streamd: note: --held-out: 6 clip(s) the checkpoint trained on left out; scoring 3" in got.err
    assert main(base) == 0  # every clip, the count --held-out scores said as it will score them
    assert "(--held-out scores only the 3 it held out)" in capsys.readouterr().err


def test_fine_tuning_from_a_model_that_trained_on_the_held_out_clips_says_so_in_its_report(
    trained: dict, tmp_path: Path, monkeypatch
) -> None:
    """train --data --init a checkpoint whose training clips include the data's held-out ones: the
    warning comes as training starts and again in the held-out report printed at its end."""
    data = trained["data"]
    model, info = load_checkpoint(trained["checkpoint"])
    info.extra[KEY] = record(sorted(data.rglob("*.wav")))  # it saw every clip, the held-out ones too
    init = save_checkpoint(tmp_path / "saw_all.safetensors", model, info)
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    args = ["train", "--data", str(data), "--init", str(init), "--epochs", "1", "--no-progress"]
    with redirect_stdout(out), redirect_stderr(err):
        assert main([*args, "--out", str(tmp_path / "ft")]) == 0
    why = "the init checkpoint trained on 3 of the 3 held-out clips: its held-out figures are not held out"
    assert why in err.getvalue()
    report = out.getvalue()[out.getvalue().index("held-out report on") :]
    assert f"  warning: {why}" in report.splitlines()[1]
