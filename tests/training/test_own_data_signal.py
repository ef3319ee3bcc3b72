"""``streamd train --data DIR``: a labelled clip with no signal (digital silence after the downmix to mono, or
a few samples) is left out and said in one warning, as any other clip that looks wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from own_clips import CLASSES, SR, folders_experiment_toml, loudest, write_class_folders

from audio_core.audio_file import read_audio
from models.checkpoint import read_info
from streamd.cli import main
from tests.support.paths import ESC50, esc50_rows
from training.own_data import MIN_SIGNAL_S, no_signal, read_own_data, scan_file


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Class folders of real clips, plus: dog/silent.wav (all zeros), rooster/antiphase.wav (a real clip in
    one channel and its negative in the other), rooster/tick.wav (two real samples), a class ``hum`` of
    two all-zero clips; and, kept, a real clip at -80 dB (quiet, not silent) and 0.1 s of one (short)."""
    root = write_class_folders(tmp_path / "data")
    row = next(r for r in esc50_rows() if r["category"] == "dog")
    wave = loudest(read_audio(ESC50 / "audio" / row["filename"], SR), 0.5)
    sf.write(root / "dog" / "silent.wav", np.zeros_like(wave), SR)
    sf.write(root / "rooster" / "antiphase.wav", np.stack([wave, -wave], axis=1), SR)
    peak = int(np.argmax(np.abs(wave[:-1])))  # a sample that differs from the next: a signal, if short
    sf.write(root / "rooster" / "tick.wav", wave[peak : peak + 2], SR)
    (root / "hum").mkdir()
    for name in ("a.wav", "b.wav"):
        sf.write(root / "hum" / name, np.zeros_like(wave), SR)
    sf.write(root / "dog" / "quiet.wav", wave * 1e-4, SR, subtype="FLOAT")
    sf.write(root / "crying_baby" / "short.wav", loudest(wave, 0.1), SR)
    return root


def own_duration(path: Path) -> float:
    scanned = scan_file(path)
    assert not isinstance(scanned, str) and scanned[1], scanned  # readable, with signal
    return scanned[0]


def test_clips_with_no_signal_are_left_out_and_said_in_one_warning(data: Path) -> None:
    """They were trained on as their class, with no warning: a silent 'dog' contradicts the background
    examples of the same run, which teach that digital silence is no class."""
    own = read_own_data(data)
    kept = {Path(c.path).relative_to(data).as_posix() for c in own.clip_set.clips}
    left_out = {"dog/silent.wav", "rooster/antiphase.wav", "rooster/tick.wav", "hum/a.wav", "hum/b.wav"}
    assert not kept & left_out and {"dog/quiet.wav", "crying_baby/short.wav"} <= kept
    assert not {data / name for name in left_out} & set(own.durations)  # nor in the window's durations
    assert own.clip_set.labels == ["crying_baby", "dog", "rooster"]
    lines = [p for p in own.problems if "no signal" in p]
    assert lines == [
        f"5 clip(s) with no signal left out (digital silence after the downmix to mono, or shorter than "
        f"{MIN_SIGNAL_S * 1000:.0f} ms), e.g. {data / 'dog' / 'silent.wav'} (digital silence)"
    ]
    assert "class 'hum': none of its 2 file(s) is usable; left out" in own.problems
    tick = data / "rooster" / "tick.wav"
    assert no_signal({tick: own_duration(tick)}, [])[1].endswith(f"e.g. {tick} (0.125 ms long)")


def test_the_no_signal_warning_is_on_stderr_with_the_others(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(data), "--epochs", "1", "--print-config"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("streamd: warning: ")]
    assert sum("5 clip(s) with no signal left out" in line for line in warnings) == 1
    assert "crying_baby, dog, rooster" not in err and "hum" in err  # said; never a class


def test_train_and_evaluate_leave_out_the_same_silent_clips_in_the_same_words(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluate --folders checked files as train --data did before it left out silence: on the folder the
    model was trained on it scored the silent clips, and the class 'hum' of silence alone, which training
    dropped, stopped it ("the model does not know the label(s) ['hum']"). Both make one check now
    (``usable_files``): the same lines, and evaluate scores what is left (--held-out: what training held
    out)."""
    monkeypatch.chdir(tmp_path)  # the feature cache is the working folder's
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--epochs", "1", "--no-progress", "--out", str(out)]) == 0
    trained = capsys.readouterr()
    left_out = [line for line in trained.err.splitlines() if "left out" in line]
    assert any("5 clip(s) with no signal left out" in line for line in left_out), trained.err
    assert "streamd: warning: class 'hum': none of its 2 file(s) is usable; left out" in left_out
    evaluate = ["evaluate", "--checkpoint", str(out / "model.safetensors"), "--folders", str(data), "--json"]
    assert main(evaluate) == 0
    scored = capsys.readouterr()
    assert [line for line in scored.err.splitlines() if "left out" in line] == left_out
    report = json.loads(scored.out)
    assert report["num_examples"] == 11 and "hum" not in report["per_class_accuracy"]
    assert main([*evaluate, "--held-out"]) == 0
    held = capsys.readouterr()
    held_out = read_own_data(data).counts()["holdout"].total()
    assert json.loads(held.out)["num_examples"] == held_out
    assert f"trained on left out; scoring {held_out}" in held.err


def test_a_toml_folders_experiment_leaves_out_the_same_clips_as_evaluate(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TOML experiment whose reader is ``folders`` trained on the silent clips (and on the class 'hum'
    of silence alone) that ``evaluate --folders`` leaves out; both use one rule now, in the same words,
    and ``evaluate --config`` with that TOML leaves them out too."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "mine.toml"
    config.write_text(folders_experiment_toml(data, tmp_path / "run", num_folds=2, val_folds=[2]))
    assert main(["train", str(config), "--no-progress"]) == 0
    trained = capsys.readouterr()
    left_out = [line for line in trained.err.splitlines() if "left out" in line]
    assert any("5 clip(s) with no signal left out" in line for line in left_out), trained.err
    assert "streamd: warning: class 'hum': none of its 2 file(s) is usable; left out" in left_out
    checkpoint = tmp_path / "run" / "single" / "model.safetensors"
    assert read_info(checkpoint).labels == ["crying_baby", "dog", "rooster"]  # 'hum' never a class
    said, counts = [], []
    for source in (["--config", str(config)], ["--folders", str(data), "--num-folds", "2", "--folds", "2"]):
        assert main(["evaluate", "--checkpoint", str(checkpoint), *source, "--json"]) == 0
        scored = capsys.readouterr()
        said.append([line for line in scored.err.splitlines() if "left out" in line])
        report = json.loads(scored.out)
        counts.append(report["num_examples"])
        assert "hum" not in report["per_class_accuracy"], source
    assert said[0] == said[1] and counts[0] == counts[1]  # fold 2 of the same folders, one rule
    assert "none of its 1 file(s) is usable" in said[0][-1]  # hum/b.wav, fold 2's only 'hum'


def test_a_toml_folders_experiment_leaves_out_a_broken_link_and_says_what_it_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken link stopped a TOML run of class folders (``DatasetError``) that ``--folders`` and ``--data``
    leave out with a warning, and the listing's notes (a file beside the class folders, a class folder
    with no audio) went unsaid; the TOML run lists the folders as they do now, in the same words."""
    monkeypatch.chdir(tmp_path)
    data = write_class_folders(tmp_path / "data", per_class=4)
    (data / "dog" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (data / "notes.txt").write_text("recorded in the garden\n")
    (data / "empty").mkdir()
    config = tmp_path / "mine.toml"
    config.write_text(folders_experiment_toml(data, tmp_path / "run", num_folds=2, val_folds=[2]))
    assert main(["train", str(config), "--no-progress"]) == 0
    trained = [line for line in capsys.readouterr().err.splitlines() if line.startswith("streamd: warning:")]
    assert any("1 unusable file(s) left out, e.g." in line and "gone.wav" in line for line in trained)
    assert any("notes.txt" in line for line in trained) and any("empty" in line for line in trained)
    checkpoint = tmp_path / "run" / "single" / "model.safetensors"
    assert read_info(checkpoint).labels == sorted(CLASSES)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--folders", str(data), "--json"]) == 0
    listed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("streamd: warning:")]
    assert [line for line in listed if "notes.txt" in line or "empty" in line] == [
        line for line in trained if "notes.txt" in line or "empty" in line
    ]


def test_a_fold_whose_every_file_is_unusable_is_refused_not_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cross-validation over class folders whose fold 3 held only unusable files trained folds 1-2 and
    reported their mean, fold 3 unsaid: it is refused, as a fold with no clip is."""
    monkeypatch.chdir(tmp_path)
    root = write_class_folders(tmp_path / "data", per_class=2)
    for folder in root.iterdir():  # a third file per class, sorted last: fold 3 of 3, unreadable
        (folder / "zz_broken.wav").write_bytes(b"not audio")
    config = tmp_path / "cv.toml"
    text = folders_experiment_toml(root, tmp_path / "run", num_folds=3, val_folds=[3])
    config.write_text(text.replace('mode = "single"', 'mode = "cv"'))
    assert main(["train", str(config), "--no-progress"]) == 2
    assert f"{config}: data.folds: folds [3] have no usable clips" in capsys.readouterr().err
