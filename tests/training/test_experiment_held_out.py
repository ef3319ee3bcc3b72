"""A TOML experiment's checkpoint records the clips it trained on, as ``streamd train --data``'s does, so
that ``streamd evaluate --folders`` tells them from held-out clips whatever its fold numbering; an older
checkpoint, which records only fold numbers, is compared by them only where they are the training's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from esc50_subset import ESC50, esc50_rows
from own_clips import folders_experiment_toml

from models.checkpoint import load_checkpoint, read_info, save_checkpoint
from streamd.cli import main
from training import trained_clips
from training.experiment import run_experiment
from training.experiment_spec import load_experiment
from training.trained_clips import KEY, clip_digest, record, recorded, too_many

CLASSES = ("dog", "rooster", "crying_baby")
PER_CLASS = 6  # with num_folds 5: folds 1, 2, 3, 4, 5, 1 in each class, fold 5 held out


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory, esc50_root: Path) -> dict[str, Path]:
    """Class folders of 0.5-s excerpts of real clips, trained on for one epoch by a TOML experiment
    (reader folders, 5 folds, fold 5 held out); the folders and the checkpoint."""
    root = tmp_path_factory.mktemp("experiment_held_out")
    data = root / "mine"
    for name in CLASSES:
        rows = [r for r in esc50_rows() if r["category"] == name][:PER_CLASS]
        (data / name).mkdir(parents=True)
        for row in rows:
            wave, rate = sf.read(str(ESC50 / "audio" / row["filename"]), dtype="float32")
            start = int(np.argmax(wave != 0))  # not digital silence, which evaluate leaves out
            sf.write(str(data / name / f"{Path(row['filename']).stem}.wav"), wave[start:][: rate // 2], rate)
    config = root / "mine.toml"
    extra = f'cache_dir = "{root / "cache"}"'
    config.write_text(folders_experiment_toml(data, root / "run", num_folds=5, val_folds=[5], extra=extra))
    run_experiment(load_experiment(config), progress=False)
    return {"data": data, "checkpoint": root / "run" / "single" / "model.safetensors"}


def test_a_toml_experiments_checkpoint_records_its_clips_and_evaluate_tells_them(
    experiment: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """evaluate --folders scored a TOML checkpoint's training clips as if held out, unsaid (without
    --num-folds no fold was compared; with another --num-folds, other clips were): the checkpoint now
    records their digests, evaluate counts them in a warning whatever the folds, and --held-out scores
    the fold the run held out (also from a copy of the folder)."""
    data, checkpoint = experiment["data"], experiment["checkpoint"]
    digests = recorded(read_info(checkpoint).extra)
    assert digests is not None and len(digests) == 5 * len(CLASSES)  # folds 1-4 of each class
    base = ["evaluate", "--checkpoint", str(checkpoint), "--cache-dir", str(tmp_path / "c"), "--json"]
    assert main([*base, "--folders", str(data)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["num_examples"] == 18
    assert (
        "streamd: warning: 15 of the 18 clips scored are clips the checkpoint trained on: these figures "
        "are not held out (--held-out scores only the 3 it did not train on)"
    ) in out.err.splitlines()
    # with --streaming the count is of the pool the soundscapes are drawn from, not of "clips scored"
    streaming = ["--streaming", "--offline", "--clips", "3", "--soundscapes", "1"]
    assert main([*base, "--folders", str(data), *streaming]) == 0
    pool = "15 of the 18 clips the soundscapes are drawn from are clips the checkpoint trained on"
    assert pool in capsys.readouterr().err
    # fold 6 of 10 is each class's sixth clip, in fold 1 of 5: fold numbers said it was not trained on
    assert main([*base, "--folders", str(data), "--num-folds", "10", "--folds", "6"]) == 0
    assert "all 3 clips scored are clips the checkpoint trained on" in capsys.readouterr().err
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    for folder in (data, copy):
        assert main([*base, "--folders", str(folder), "--held-out"]) == 0
        out = capsys.readouterr()
        assert json.loads(out.out)["num_examples"] == 3 and "not held out" not in out.err
        note = "streamd: note: --held-out: 15 clip(s) the checkpoint trained on left out; scoring 3"
        assert note in out.err.splitlines()


def test_an_older_checkpoint_of_these_folders_says_it_cannot_tell(
    experiment: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """A checkpoint that records only its fold numbers: they were compared with --num-folds' (another
    numbering: a warning for the wrong clips, none for the right ones) and not at all without it. Now one
    note says whether the clips scored were trained on cannot be told, and no fold is compared."""
    model, info = load_checkpoint(experiment["checkpoint"])
    info.extra.pop(KEY, None)  # as an older streamd wrote it
    older = save_checkpoint(tmp_path / "older.safetensors", model, info)
    base = ["evaluate", "--checkpoint", str(older), "--cache-dir", str(tmp_path / "c"), "--json"]
    for folds in ([], ["--num-folds", "10", "--folds", "6"], ["--num-folds", "2", "--folds", "2"]):
        assert main([*base, "--folders", str(experiment["data"]), *folds]) == 0
        err = capsys.readouterr().err
        notes = [line for line in err.splitlines() if "cannot be told" in line]
        assert len(notes) == 1 and notes[0].startswith("streamd: note: the checkpoint was trained on")
        assert "fold(s) [1, 2, 3, 4]" in notes[0] and "warning" not in err


def _counting_digests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files ``trained_clips`` reads to digest from now on (an empty memo to start with)."""
    opened: list[str] = []
    real = trained_clips.hashlib.blake2b
    monkeypatch.setattr(trained_clips, "_DIGESTS", {})
    monkeypatch.setattr(trained_clips.hashlib, "blake2b", lambda **kw: opened.append("") or real(**kw))
    return opened


def test_each_clip_is_digested_once_per_process_and_again_once_changed(
    experiment: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every fold of a cross-validation read every training clip's bytes again to digest them: each file
    is digested once per process now (keyed by path, size and modification time, as the feature cache
    is), and again once it changed."""
    files = sorted(experiment["data"].rglob("*.wav"))[:4]
    read = _counting_digests(monkeypatch)
    first, second = record(files[:3]), record(files[1:])  # two folds' training clips, two shared
    assert len(read) == 4 and (first["count"], second["count"]) == (3, 3)
    assert second["digests"] == sorted(clip_digest(f) for f in files[1:]) and len(read) == 4
    changed = tmp_path / "changed.wav"
    shutil.copy(files[0], changed)
    before = clip_digest(changed)
    wave, rate = sf.read(str(changed), dtype="float32")
    sf.write(str(changed), wave[: len(wave) // 2], rate)  # re-encoded: other bytes
    assert clip_digest(changed) not in (before, None) and len(read) == 6


def test_above_the_cap_no_digest_is_recorded_and_evaluate_says_it_cannot_tell(
    experiment: dict[str, Path], tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A huge data set would have put ~22 bytes per clip in the checkpoint's header, parsed at every load
    (daemon start included): above ``MAX_DIGESTS`` clips none is recorded, nor read, the count is, and
    evaluate says it cannot tell (--held-out is refused in one line)."""
    monkeypatch.setattr(trained_clips, "MAX_DIGESTS", 10)
    read = _counting_digests(monkeypatch)
    entry = record(sorted(experiment["data"].rglob("*.wav")))
    assert {k: v for k, v in entry.items() if k != "note"} == {
        "scheme": trained_clips.SCHEME,
        "count": 18,
        "digests": None,
    }
    assert entry["note"].startswith("18 training clips, more than 10: their digests are not recorded")
    assert not read
    model, info = load_checkpoint(experiment["checkpoint"])
    info.extra[KEY] = entry
    capped = save_checkpoint(tmp_path / "capped.safetensors", model, info)
    assert recorded(read_info(capped).extra) is None and too_many(read_info(capped).extra) == 18
    base = ["evaluate", "--checkpoint", str(capped), "--folders", str(experiment["data"])]
    assert main([*base, "--cache-dir", str(tmp_path / "c"), "--json"]) == 0
    err = capsys.readouterr().err
    assert (
        "streamd: note: the checkpoint trained on 18 clips, too many to record each: whether the clips "
        "scored were trained on cannot be told clip by clip"
    ) in err.splitlines()
    assert "older streamd" not in err
    assert main([*base, "--held-out"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "streamd: error: --held-out: the checkpoint trained on 18 clips, too many to record each"
    )
    assert err.count("\n") == 1
