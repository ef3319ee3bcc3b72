"""A run started from another checkpoint has seen what that one trained on: training warns when its held-out
clips are among them, and ``evaluate`` counts them (or leaves them out with ``--held-out``) as the run's own,
by clip digest, or by fold where the init records no clip list (the shipped models before they recorded
theirs)."""

from __future__ import annotations

from pathlib import Path

import torch
from esc50_subset import small_esc50_rows, write_esc50_subset, write_experiment

from models.checkpoint import load_checkpoint, read_info, save_checkpoint
from models.common import FeatureConfig, ModelInfo, Normalization
from models.registry import build_model, config_to_dict, make_config
from streamd.cli import main
from training.experiment import run_experiment
from training.experiment_spec import load_experiment
from training.trained_clips import INIT_KEY, KEY, inherited, not_held_out_lines, record, recorded

CATEGORIES = ("dog", "rooster")
SHIPPED = Path(__file__).resolve().parents[2] / "streamd" / "default_models" / "default.safetensors"
TRAIN = """
[train]
epochs = 1
batch_size = 4
precision = "fp32"
eval_every = 0
"""


def _config(tmp_path: Path, csv_path: Path, audio: Path, folds: str, val: int) -> Path:
    chosen = f"folds = [{folds}]\nval_folds = [{val}]"
    out = tmp_path / "runs"
    return write_experiment(
        tmp_path / "ft.toml", csv_path, audio, out, mode="single", data=chosen, tables=TRAIN
    )


def _evaluate(checkpoint: Path, csv_path: Path, audio: Path, *extra: str) -> list[str]:
    return [
        "evaluate",
        "--checkpoint",
        str(checkpoint),
        "--esc50",
        str(csv_path),
        "--audio-dir",
        str(audio),
        *extra,
    ]


def test_fine_tuning_the_shipped_model_on_esc50_says_its_fold_4_is_not_held_out(
    tmp_path: Path, esc50_root: Path, capsys
) -> None:
    """The shipped model trained on ESC-50 folds 1-4 and records its clips, so fine-tuned on fold 1 and
    validated on fold 4 (the fine-tuning config's split) its figures are not held out, by digest; and an
    init that records its folds alone (as the shipped models did), by fold."""
    audio = esc50_root / "audio"
    subset = write_esc50_subset(tmp_path / "meta", CATEGORIES, 1, (1, 4))
    csv_path = subset.rename(subset.with_name("esc50.csv"))  # the data set the shipped model names
    (tmp_path / "shipped").mkdir()
    exp = load_experiment(_config(tmp_path / "shipped", csv_path, audio, "1, 4", 4), init="default")
    run_experiment(exp, progress=False)
    why = "the init checkpoint trained on 2 of the 2 held-out clips: its held-out figures are not held out"
    assert (
        capsys.readouterr().err
        == f"streamd: warning: single: {why} (streamd evaluate --held-out leaves them out)\n"
    )
    model, info = load_checkpoint(SHIPPED)
    del info.extra[KEY]  # the shipped model as it was, with its folds alone
    (tmp_path / "older").mkdir()
    older = save_checkpoint(tmp_path / "older" / "default.safetensors", model, info)
    exp = load_experiment(_config(tmp_path, csv_path, audio, "1, 4", 4), init=str(older))
    summary = run_experiment(exp, progress=False)
    err = capsys.readouterr().err
    why = "the init checkpoint (default.safetensors) trained on fold(s) [4] of esc50, held out here"
    assert f"streamd: warning: single: {why}: its held-out figures are not held out" in err
    assert summary["runs"][0]["not_held_out"].startswith(why)
    assert f"Warning, run single: {why}" in (tmp_path / "runs" / "summary.md").read_text()
    checkpoint = Path(summary["runs"][0]["checkpoint"])
    (entry,) = read_info(checkpoint).extra[INIT_KEY]
    assert entry["source"] == "default.safetensors" and entry["dataset"] == "esc50"
    assert entry["train_folds"] == [1, 2, 3, 4] and KEY not in entry

    assert main(_evaluate(checkpoint, csv_path, audio, "--folds", "4")) == 0
    who = "the checkpoint or its --init checkpoint trained on"
    assert capsys.readouterr().err == f"streamd: warning: all 2 clips scored are clips {who}: not held out\n"
    assert main(_evaluate(checkpoint, csv_path, audio, "--folds", "4", "--held-out")) == 2
    assert f"--held-out: all 2 clips given are clips {who}" in capsys.readouterr().err
    # its own training fold told by digest, the init's by fold: one count of both, nothing held out
    assert main(_evaluate(checkpoint, csv_path, audio)) == 0
    assert capsys.readouterr().err == f"streamd: warning: all 4 clips scored are clips {who}: not held out\n"
    assert main(_evaluate(checkpoint, csv_path, audio, "--held-out")) == 2
    capsys.readouterr()

    # an init that records no data set (the shipped recurrent and AST models) trained on ESC-50: so read
    # by --config's esc50 reader as by --esc50
    model, info = load_checkpoint(checkpoint)
    info.extra[INIT_KEY][0]["dataset"] = None
    nameless = save_checkpoint(tmp_path / "nameless.safetensors", model, info)
    data_only = tmp_path / "data.toml"
    data_only.write_text(f'[data]\nreader = "esc50"\ncsv_path = "{csv_path}"\naudio_dir = "{audio}"\n')
    base = ["evaluate", "--checkpoint", str(nameless), "--config", str(data_only), "--folds", "4"]
    assert main([*base, "--held-out"]) == 2
    assert f"--held-out: all 2 clips given are clips {who}" in capsys.readouterr().err
    # malformed records of an init are no record: no traceback, nothing told by them
    info.extra[INIT_KEY] = [
        {"source": "x", "dataset": "esc50", "train_folds": 4},
        "junk",
        {"train_folds": [[1]]},
    ]
    malformed = save_checkpoint(tmp_path / "malformed.safetensors", model, info)
    assert main(_evaluate(malformed, csv_path, audio, "--folds", "4")) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_an_inits_training_clips_are_known_by_digest_whatever_the_data_set_is_called(
    tmp_path: Path, esc50_root: Path, capsys
) -> None:
    """An init that records its clips (every streamd train): B, started from A, holds out A's training
    clips in a data set of another name; training warns, evaluate counts them and --held-out leaves
    them out, as it does B's own."""
    audio = esc50_root / "audio"
    rows = small_esc50_rows(CATEGORIES, 1, (1, 2))
    fold1 = [audio / r["filename"] for r in rows if int(r["fold"]) == 1]
    torch.manual_seed(3)
    config = config_to_dict(
        make_config("resnet_cnn", {"num_mel_bins": 64, "channels": [8, 16], "num_classes": 2})
    )
    info = ModelInfo(
        arch="resnet_cnn",
        config=config,
        labels=list(CATEGORIES),
        features=FeatureConfig(num_mel_bins=64),
        normalization=Normalization(mean=-5.0, std=4.0, target_frames=200),
        extra={"dataset": "elsewhere", "train_folds": [1], KEY: record(fold1)},
    )
    a = save_checkpoint(tmp_path / "a.safetensors", build_model("resnet_cnn", config), info)
    csv_path = write_esc50_subset(tmp_path / "meta", CATEGORIES, 1, (1, 2))  # "subset": not A's name
    summary = run_experiment(load_experiment(_config(tmp_path, csv_path, audio, "1, 2", 1), init=str(a)))
    err = capsys.readouterr().err
    assert "single: the init checkpoint trained on 2 of the 2 held-out clips: its held-out figures" in err
    b = Path(summary["runs"][0]["checkpoint"])

    assert main(_evaluate(b, csv_path, audio, "--folds", "1")) == 0
    who = "the checkpoint or its --init checkpoint trained on"
    assert f"all 2 clips scored are clips {who}: not held out" in capsys.readouterr().err
    assert main(_evaluate(b, csv_path, audio, "--held-out")) == 2  # fold 2 its own, fold 1 A's
    assert f"--held-out: all 4 clips given are clips {who}" in capsys.readouterr().err
    # a checkpoint of too many clips to record its own still tells its init's
    model, too_many = load_checkpoint(b)
    too_many.extra[KEY] = {"scheme": too_many.extra[KEY]["scheme"], "count": 300000, "digests": None}
    c = save_checkpoint(tmp_path / "c.safetensors", model, too_many)
    assert main(_evaluate(c, csv_path, audio, "--folds", "1")) == 0
    assert f"all 2 clips scored are clips {who}: not held out" in capsys.readouterr().err
    entries = read_info(b).extra[INIT_KEY]
    assert [e["source"] for e in entries] == ["a.safetensors"] and entries[0][KEY]["count"] == 2
    # a run from B would inherit both: B's record and, through it, A's
    chain = inherited(read_info(b).extra, "b.safetensors", set())
    assert [e["source"] for e in chain] == ["b.safetensors", "a.safetensors"]
    assert recorded(chain[0]) == recorded(read_info(b).extra) and recorded(chain[1]) == recorded(info.extra)
    # a digest the run records itself stays in its init's entry too: what the init trained on is whole
    again = inherited(read_info(b).extra, "b.safetensors", recorded(read_info(b).extra))
    assert set(again[0][KEY]["digests"]) == recorded(read_info(b).extra) and again[0][KEY]["count"] == 2


def test_a_held_out_copy_of_a_training_clip_that_the_init_trained_on_counts_as_the_inits(
    tmp_path: Path,
) -> None:
    """The init's count left out a held-out clip that was also a copy of one of the run's own training
    clips ("the init trained on 12 of the 13" where evaluate said all 13)."""
    clips = []
    for i in range(3):
        path = tmp_path / f"c{i}.wav"
        path.write_bytes(bytes([i]) * 64)
        clips.append(path)
    copy = tmp_path / "test_copy_of_c0.wav"
    copy.write_bytes(clips[0].read_bytes())
    own = record(clips[:1])  # the run trains on c0
    init_extra = {KEY: record(clips)}  # its init trained on c0, c1, c2
    extra = {KEY: own, INIT_KEY: inherited(init_extra, "init.safetensors", recorded({KEY: own}))}
    held_out = [copy, clips[1], clips[2]]
    lines = not_held_out_lines(extra, clips[:1], held_out, None, [], esc50=False)
    assert lines[0].startswith("1 of the 3 held-out clip(s) are copies of training clips")
    assert lines[1].startswith("the init checkpoint trained on 3 of the 3 held-out clips")
    assert lines[1].endswith("(streamd evaluate --held-out leaves them out)")


def test_a_held_out_clip_copied_into_a_training_fold_is_said_before_training(
    tmp_path: Path, esc50_root: Path, capsys
) -> None:
    """A TOML run whose fold 1 holds a byte copy of a fold-4 clip (another name) reported fold 4 as held out
    without a word, while evaluate of the checkpoint said it trained on that clip."""
    import csv
    import shutil

    rows = small_esc50_rows(CATEGORIES, 1, (1, 4))
    audio = tmp_path / "audio"
    audio.mkdir()
    for row in rows:
        shutil.copy(esc50_root / "audio" / row["filename"], audio / row["filename"])
    held = next(r for r in rows if r["fold"] == "4")
    copy = {**held, "fold": "1", "filename": f"1-999999-A-{held['target']}.flac"}
    shutil.copy(audio / held["filename"], audio / copy["filename"])
    csv_path = tmp_path / "meta" / "esc50.csv"
    csv_path.parent.mkdir()
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([*rows, copy])
    model = '[model]\narch = "resnet_cnn"\n[model.config]\nchannels = [8, 16]\n'
    config = write_experiment(
        tmp_path / "exp.toml", csv_path, audio, tmp_path / "runs", mode="single",
        data="folds = [1, 4]\nval_folds = [4]", tables=model + TRAIN,
    )  # fmt: skip
    summary = run_experiment(load_experiment(config), progress=False)
    said = f"1 of the 2 held-out clip(s) are copies of training clips (e.g. {audio / held['filename']})"
    assert f"streamd: warning: single: {said}: the report scores them as held out" in capsys.readouterr().err
    assert summary["runs"][0]["not_held_out"].startswith(said)
