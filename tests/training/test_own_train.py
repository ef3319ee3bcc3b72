"""``streamd train --data DIR``: what it takes from ``--set`` and ``--window``, and what it refuses in one
line before any work (the run, its ``--print-config`` TOML and every other command must agree)."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
import soundfile as sf
from own_clips import write_class_folders

from streamd.cli import main


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_class_folders(tmp_path_factory.mktemp("own") / "data")


def _train(
    data: Path, capsys: pytest.CaptureFixture[str], *args: str, print_config: bool = False
) -> tuple[int, str, str]:
    extra = ["--print-config"] if print_config else ["--no-progress"]
    code = main(["train", "--data", str(data), "--epochs", "1", *args, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


NOT_TAKEN = [
    ('data.root="varlen"', "data.root", "the clips and the held-out split are DIR's"),
    ("data.folds=[1, 2, 3, 4]", "data.folds", "the clips and the held-out split are DIR's"),
    ("data={val_folds = [1]}", "data.val_folds", "the clips and the held-out split are DIR's"),
    ('experiment.mode="cv"', "experiment.mode", "--data trains one model and reports held-out clips"),
    ('experiment={mode = "cv"}', "experiment.mode", "--data trains one model and reports held-out clips"),
    ("normalization.target_frames=300", "normalization.target_frames", "the window is --window S"),
    ('model.init="default"', "model.init", "fine-tune with --init CHECKPOINT|NAME"),
]


@pytest.mark.parametrize(("setting", "key", "why"), NOT_TAKEN)
def test_set_keys_the_data_run_does_not_take_are_refused_and_never_printed(
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    key: str,
    why: str,
) -> None:
    """They were said to apply, then ignored by the run (it trained on DIR's split, with the derived
    window's augmentation), while ``--print-config`` wrote them into a TOML that trained something else."""
    monkeypatch.chdir(tmp_path)
    for print_config in (False, True):
        code, out, err = _train(data, capsys, "--set", setting, print_config=print_config)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith(f"streamd: error: --set {key}: ") and why in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / ".cache").exists()  # before any work


@pytest.mark.parametrize("form", ['experiment.cache_dir="{}"', 'experiment={{cache_dir="{}"}}'])
def test_a_set_feature_cache_is_the_one_the_derivation_uses_too(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """Given in an inline table, the cache was missed by the derivation (it filled .cache/fbank) while the
    config trained with it, and the table replaced the derived one (the run's --out and name were
    lost): every reading of --set is one table now (``own_choices.set_table``), laid over the derived
    one key by key."""
    monkeypatch.chdir(tmp_path)
    cache, out_dir = tmp_path / "elsewhere", tmp_path / "out"
    code, out, err = _train(
        data, capsys, "--set", form.format(cache), "--out", str(out_dir), print_config=True
    )
    assert code == 0, err
    experiment = tomllib.loads(out)["experiment"]
    assert experiment == {
        "name": "data",
        "output_dir": str(out_dir),
        "cache_dir": str(cache),
        "mode": "single",
    }
    assert len(list(cache.glob("*.npy"))) == 9 and not (tmp_path / ".cache").exists()


def test_set_features_in_an_inline_table_are_the_ones_derived_on(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``features={num_mel_bins=32}`` was not seen by the derivation (its statistics were of 64 bins) and
    replaced the derived table in the config trained."""
    monkeypatch.chdir(tmp_path)
    code, out, err = _train(data, capsys, "--set", "features={num_mel_bins=32}", print_config=True)
    assert code == 0, err
    assert "features: 32-bin log-mel of 9 clips" in err
    assert tomllib.loads(out)["features"] == {"num_mel_bins": 32}


def test_a_window_that_is_not_whole_frame_shifts_is_refused_as_a_hop_is(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--window 1.234`` was reported and stored as 1.234 s while every other command used 1.23 s."""
    monkeypatch.chdir(tmp_path)
    for print_config in (False, True):
        code, out, err = _train(data, capsys, "--window", "1.234", print_config=print_config)
        assert (code, out) == (2, "")
        assert err == "streamd: error: --window must be a multiple of the frame shift (10 ms), got 1.234\n"
    assert not (tmp_path / "runs").exists() and not (tmp_path / ".cache").exists()
    code, out, err = _train(data, capsys, "--window", "1.23", print_config=True)
    assert code == 0 and "window: 1.23 s = 121 frames (--window" in err, err
    assert tomllib.loads(out)["normalization"]["target_frames"] == 121


def test_another_data_sets_output_folder_is_named_and_out_suggested_before_fresh(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``projA/data`` and ``projB/data`` both default to ``runs/data``: the second run was refused with
    "a different configuration ... start over with --fresh", which overwrote project A's model. It names
    A's data folder and gives --out first; --fresh still overwrites. The same data moved resumes."""
    monkeypatch.chdir(tmp_path)
    a, b = tmp_path / "projA" / "data", tmp_path / "projB" / "data"
    shutil.copytree(data, a)
    for clip in sorted(a.rglob("*.wav")):  # other clips: the same sounds at half the level
        wave, rate = sf.read(clip)
        (b / clip.parent.name).mkdir(parents=True, exist_ok=True)
        sf.write(b / clip.parent.name / clip.name, 0.5 * wave, rate)
    assert _train(a, capsys)[0] == 0
    code, out, err = _train(b, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err == (
        f"streamd: error: runs/data holds training on another data set ({a.resolve()}), not on {b}: give "
        "--out DIR to train this one into a folder of its own (--fresh overwrites the other's model)\n"
    )
    moved = tmp_path / "projC" / "data"  # the same clips in another place: the same data set, resumed
    shutil.copytree(a, moved)
    code, out, err = _train(moved, capsys)
    assert code == 0 and "resuming from epoch 1 of 1" in out, err
    changed = tmp_path / "projD" / "data"  # moved and a clip added (its hold-out carved anew): not another
    shutil.copytree(a, changed)  # data set, but changed data, which the resume check refuses as such
    first = sorted(changed.rglob("*.wav"))[0]
    wave, rate = sf.read(first)
    sf.write(first.with_name("added.wav"), 0.25 * wave, rate)
    code, out, err = _train(changed, capsys)
    assert code == 2 and "another data set" not in err and "a different configuration" in err, err
    code, out, err = _train(b, capsys, "--fresh")
    assert code == 0 and "starting over (--fresh)" in out, err


def test_the_start_summary_and_choices_say_the_set_batch_and_lr_the_run_uses(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--set train.batch_size=8 --set train.lr=0.01`` trained at 8 and 0.01 while the summary said
    "batch 32, lr 0.002" and choices.json recorded the derived values."""
    monkeypatch.chdir(tmp_path)
    out_dir = tmp_path / "out"
    settings = ["--set", "train.batch_size=8", "--set", "train.lr=0.01", "--out", str(out_dir)]
    code, out, err = _train(data, capsys, *settings, print_config=True)
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if line.startswith("schedule: ")]
    assert line.endswith(", batch 8, lr 0.01"), line
    assert tomllib.loads(out)["train"]["batch_size"] == 8
    code, _, err = _train(data, capsys, *settings)
    assert code == 0, err
    recorded = json.loads((out_dir / "choices.json").read_text())["train"]
    assert (recorded["batch_size"], recorded["lr"]) == (8, 0.01)
