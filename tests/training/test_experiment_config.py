"""Experiment configs: validation naming file and key, overrides, and real k-fold runs on ESC-50 clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from esc50_subset import write_esc50_subset
from safetensors.numpy import load_file

from models.checkpoint import load_checkpoint
from streamd.cli import main
from training.experiment import run_experiment
from training.experiment_spec import ExperimentConfigError, apply_overrides, load_experiment

CATEGORIES = ("dog", "rooster", "rain")  # ESC-50 targets 0, 1, 10: the label order

TINY = """
[experiment]
name = "tiny"
output_dir = "{out}"
cache_dir = "{cache}"
mode = "cv"

[data]
reader = "esc50"
csv_path = "{csv}"
audio_dir = "{audio}"
folds = [1, 2]

[features]
num_mel_bins = 64

[normalization]
target_frames = 200

[model]
arch = "resnet_cnn"

[model.config]
channels = [8, 16]
dropout = 0.0

[train]
epochs = 2
batch_size = 4
lr = 0.003
warmup_epochs = 0.5
precision = "fp32"
eval_every = 0
seed = 7

[train.augment]
mixup_prob = 0.5
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture()
def tiny_config(tmp_path: Path, esc50_root: Path) -> Path:
    csv_path = write_esc50_subset(tmp_path / "meta", CATEGORIES, 2, (1, 2, 3))
    text = TINY.format(
        out=tmp_path / "runs", cache=tmp_path / "cache", csv=csv_path, audio=esc50_root / "audio"
    )
    return _write(tmp_path / "tiny.toml", text)


def test_valid_config_parses(tiny_config: Path) -> None:
    exp = load_experiment(tiny_config)
    assert exp.name == "tiny" and exp.mode == "cv" and exp.arch == "resnet_cnn"
    assert exp.features.num_mel_bins == 64 and exp.normalization.target_frames == 200
    assert exp.train.epochs == 2 and exp.train.lr == 0.003 and exp.train.augment.mixup_prob == 0.5
    assert exp.folds == [1, 2] and not exp.train.sequences.enabled
    assert isinstance(exp.reader_options["csv_path"], Path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[train]", "[train]\nepochz = 3"), r"tiny.toml: train.epochz: unknown key"),
        (("seed = 7", "seed = -1"), r"train.seed must be >= 0, got -1"),  # torch took it as 2^64 - 1
        (("seed = 7", "seed = 9223372036854775808"), r"train.seed must be below"),
        (("[train.augment]", "[train.augment]\nmixup = 1.0"), r"train.augment.mixup: unknown key"),
        (
            ("[train.augment]", "[train.sequences]\nlength = 9.0\n[train.augment]"),
            r"train.sequences.length: unknown",
        ),
        (
            ("[train.augment]", "[train.sequences]\ngap_min_s = 4.0\ngap_max_s = 1.0\n[train.augment]"),
            r"train.sequences.gap_min_s must not exceed gap_max_s, got 4.0 > 1.0",
        ),
        (("[features]", "[features]\nmel_bins = 3"), r"features.mel_bins: unknown key"),
        (("[model.config]", "[model.config]\nwidth = 3"), r"model.config.width: unknown key"),
        (("[data]", "[data]\ncsv = 'x'"), r"data.csv: unknown key"),
        # reader options of the wrong type were an internal error (TypeError) or read letter by letter
        (('audio_dir = "', 'audio_dir = 5  # "'), r"data.audio_dir: must be a path \(a non-empty"),
        (("[data]", "[data]\ncategories = 'dog'"), r"data.categories: must be a list of strings, got 'dog'"),
        (("[experiment]", "[optimizer]\nlr = 1\n[experiment]"), r"optimizer: unknown table"),
        (('arch = "resnet_cnn"', 'arch = "vgg"'), r"model.arch: must be one of"),
        (('mode = "cv"', 'mode = "loo"'), r"experiment.mode must be one of single, cv, full, got 'loo'"),
        (("epochs = 2", 'epochs = "two"'), r"train.epochs: expected int, got str 'two'"),
        (("folds = [1, 2]", 'folds = ["a"]'), r"data.folds: must be a list of integers"),
        (('mode = "cv"', 'mode = "single"'), r"data.val_folds: required"),
        (("target_frames = 200", "target_frames = 8000"), r"target_frames must be at most 6000, got 8000"),
    ],
)
def test_invalid_configs_name_file_and_key(tiny_config: Path, edit: tuple[str, str], message: str) -> None:
    text = tiny_config.read_text().replace(edit[0], edit[1], 1)
    with pytest.raises(ExperimentConfigError, match=message):
        load_experiment(_write(tiny_config, text))


def test_a_fold_named_that_holds_no_clip_is_refused_not_dropped(tiny_config: Path) -> None:
    """``data.folds = [1, 2, 9]`` trained folds 1 and 2 and reported their mean, fold 9 unsaid; a
    val_fold outside data.folds was "folds [4] have no clips", as if the data had none."""
    text = tiny_config.read_text()
    with pytest.raises(ExperimentConfigError, match=r"data.folds: folds \[9\] have no clips \(the dataset"):
        run_experiment(
            load_experiment(_write(tiny_config, text.replace("folds = [1, 2]", "folds = [1, 2, 9]", 1)))
        )
    single = text.replace('mode = "cv"', 'mode = "single"').replace("[data]", "[data]\nval_folds = [3]", 1)
    with pytest.raises(ExperimentConfigError, match=r"val_folds: folds \[3\] have no clips among data.folds"):
        run_experiment(load_experiment(_write(tiny_config, single)))


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ExperimentConfigError, match="no such config file"):
        load_experiment(tmp_path / "absent.toml")
    with pytest.raises(ExperimentConfigError, match="invalid TOML"):
        load_experiment(_write(tmp_path / "bad.toml", "[train\nepochs = "))


def test_overrides() -> None:
    data = {"train": {"epochs": 60}, "experiment": {"mode": "single"}}
    out = apply_overrides(data, ["train.epochs=2", "experiment.mode=cv", "train.augment.mixup_prob=0.0"])
    assert out == {"train": {"epochs": 2, "augment": {"mixup_prob": 0.0}}, "experiment": {"mode": "cv"}}
    assert data["train"]["epochs"] == 60  # the input is not modified
    with pytest.raises(ExperimentConfigError, match="not KEY=VALUE"):
        apply_overrides(data, ["train.epochs"])
    # a table given merges key by key: it replaced the whole table (mode, output folder, augmentation lost)
    full = {"experiment": {"mode": "cv", "output_dir": "runs/x"}, "train": {"augment": {"gain_db": 6.0}}}
    merged = apply_overrides(full, ['experiment={cache_dir="c"}', "train.augment={mixup_prob=0.1}"])
    assert merged["experiment"] == {"mode": "cv", "output_dir": "runs/x", "cache_dir": "c"}
    assert merged["train"]["augment"] == {"gain_db": 6.0, "mixup_prob": 0.1}
    assert apply_overrides(full, ["train.augment=3"])["train"]["augment"] == 3  # not a table: replaced


def test_cross_validation_writes_per_fold_checkpoints_and_summary(tiny_config: Path) -> None:
    exp = load_experiment(tiny_config)
    summary = run_experiment(exp, progress=False)
    out = exp.output_dir
    assert [r["run"] for r in summary["runs"]] == ["fold1", "fold2"]
    for run, held_out in (("fold1", 1), ("fold2", 2)):
        _, info = load_checkpoint(out / run / "model.safetensors")
        assert info.labels == list(CATEGORIES) and info.features.num_mel_bins == 64
        assert info.config["num_classes"] == 3 and info.extra["val_folds"] == [held_out]
        assert info.extra["train_folds"] == [3 - held_out]
        report = json.loads((out / run / "eval" / "report.json").read_text())
        assert report["num_examples"] == 6 and 0.0 <= report["accuracy"] <= 1.0
        assert (out / run / "eval" / "confusion.png").stat().st_size > 1000
        assert (out / run / "train_state.safetensors").exists()
    pooled = np.array(summary["pooled_confusion_matrix"])
    assert pooled.sum() == 12 and pooled.shape == (3, 3)
    accs = [r["accuracy"] for r in summary["runs"]]
    assert summary["metrics"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert json.loads((out / "summary.json").read_text())["mode"] == "cv"
    assert "| fold1 | 1 | 6 |" in (out / "summary.md").read_text()
    assert (out / "confusion.png").exists()


def test_a_seed_reproduces_a_run(tiny_config: Path, tmp_path: Path) -> None:
    weights = []
    for name in ("a", "b"):
        exp = load_experiment(
            tiny_config, ['experiment.mode="full"', f'experiment.output_dir="{tmp_path / name}"']
        )
        run_experiment(exp, progress=False)
        weights.append(load_file(str(tmp_path / name / "full" / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        np.testing.assert_array_equal(weights[0][key], weights[1][key])
    exp = load_experiment(
        tiny_config, ['experiment.mode="full"', f'experiment.output_dir="{tmp_path / "c"}"', "train.seed=8"]
    )
    run_experiment(exp, progress=False)
    other = load_file(str(tmp_path / "c" / "full" / "model.safetensors"))
    assert any(not np.array_equal(other[k], weights[0][k]) for k in other if other[k].dtype.kind == "f")


def test_train_command(tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "train",
            str(tiny_config),
            "--mode",
            "single",
            "--set",
            "data.val_folds=[2]",
            "--no-progress",
            "--out",
            str(tmp_path / "cmd"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "| single | 2 | 6 |" in captured.out
    assert (tmp_path / "cmd" / "single" / "model.safetensors").exists()
    code = main(["train", str(tiny_config), "--set", "train.epochz=1"])
    assert code == 2
    assert "train.epochz: unknown key" in capsys.readouterr().err


def test_unusable_folders_and_one_class_are_one_line_before_training(
    tiny_config: Path, tmp_path: Path, esc50_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    assert main(["train", str(tiny_config), "--out", str(tmp_path / "file")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"streamd: error: --out {tmp_path / 'file'}: exists and is not a folder"
    )
    assert main(["train", str(tiny_config), "--set", f'experiment.cache_dir="{tmp_path / "file"}"']) == 2
    assert "experiment.cache_dir" in capsys.readouterr().err
    one = write_esc50_subset(tmp_path / "one", CATEGORIES[:1], 2, (1, 2))
    assert main(["train", str(tiny_config), "--set", f'data.csv_path="{one}"']) == 2
    err = capsys.readouterr().err
    assert f"one class ('{CATEGORIES[0]}'): a classifier needs at least two" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_print_config_shows_the_config_as_it_would_run(
    tiny_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With CONFIG.toml, --print-config prints the checked config after --set, --mode and --out and trains
    nothing; printed and read back, it is the same experiment."""
    out = tmp_path / "printed_run"
    sets = ["--set", "train.epochs=9", "--set", "data.val_folds=[2]"]
    args = ["train", str(tiny_config), "--mode", "single", *sets, "--out", str(out)]
    code = main([*args, "--print-config"])
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0, captured.err
    assert not out.exists()
    again = load_experiment(_write(tmp_path / "printed.toml", printed))
    assert (again.mode, again.train.epochs, again.output_dir) == ("single", 9, out)
    assert again.train == load_experiment(tiny_config, ["train.epochs=9"]).train
    assert again.val_folds == [2]
    assert main(["train", str(tiny_config), "--set", "train.epochz=1", "--print-config"]) == 2
    assert "train.epochz: unknown key" in capsys.readouterr().err


OWN_DATA_OPTIONS = [["--epochs", "3"], ["--window", "2"], ["--recipe", "ast"], ["--no-background"]]


@pytest.mark.parametrize("option", OWN_DATA_OPTIONS)
def test_options_of_own_data_are_refused_with_a_config(
    tiny_config: Path, option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tiny_config), *option]) == 2
    err = capsys.readouterr().err
    assert f"{option[0]} only applies to --data DIR" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("num_mel_bins = 64", "num_mel_bins = 0"), r"features.num_mel_bins must be > 3, got 0"),
        (("num_mel_bins = 64", "sample_rate = 0"), r"features.sample_rate must be positive, got 0"),
        (("num_mel_bins = 64", "frame_length_ms = 0.05"), r"features.frame_length_ms must hold 2 samples"),
        (("num_mel_bins = 64", "frame_shift_ms = 0.0"), r"features.frame_shift_ms must be positive"),
        (("num_mel_bins = 64", "frame_shift_ms = 0.01"), r"features.frame_shift_ms must hold a sample"),
        (("num_mel_bins = 64", "window_type = 'triangle'"), r"features.window_type: unknown window_type"),
        (("num_mel_bins = 64", "preemphasis = 1.5"), r"features.preemphasis must be at most 1, got 1.5"),
        (("num_mel_bins = 64", "low_freq = -5.0"), r"features.low_freq must be >= 0, got -5.0"),
        (("num_mel_bins = 64", "high_freq = 9000.0"), r"band within 0..8000 Hz .*, got 20..9000 Hz"),
        (("num_mel_bins = 64", "high_freq = -7990.0"), r"features.low_freq..high_freq must be a band"),
        (("target_frames = 200", "target_frames = 0"), r"normalization.target_frames must be positive"),
        (("target_frames = 200", "std = 0.0"), r"normalization.std must be positive, got 0.0"),
        (("channels = [8, 16]", "channels = []"), r"model.config: channels must be one or more positive"),
        (("channels = [8, 16]", "channels = [8, 0]"), r"model.config: channels must be one or more positive"),
        (("dropout = 0.0", "dropout = 2.0"), r"model.config: dropout must be in \[0, 1\), got 2.0"),
        (
            ("target_frames = 200", "target_frames = 1"),
            r"tiny.toml: normalization.target_frames = 1, features.num_mel_bins = 64: the resnet_cnn model "
            r"cannot take windows of that size \(",
        ),
    ],
)
def test_impossible_features_and_windows_are_refused_by_the_config_check(
    tiny_config: Path, edit: tuple[str, str], message: str
) -> None:
    """Values the fbank or the model cannot take are one line naming the key when the config is read (they
    were accepted, and training failed later with a torch error)."""
    text = tiny_config.read_text().replace(edit[0], edit[1], 1)
    with pytest.raises(ExperimentConfigError, match=message):
        load_experiment(_write(tiny_config, text))


def test_set_impossible_mel_bins_is_one_line(tiny_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for extra in (["--print-config"], ["--no-progress"]):
        assert main(["train", str(tiny_config), "--set", "features.num_mel_bins=0", *extra]) == 2
        err = capsys.readouterr().err
        assert "features.num_mel_bins must be > 3, got 0" in err and len(err.strip().splitlines()) == 1


def test_sizes_given_in_model_config_that_contradict_the_data_are_one_line(
    tiny_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``num_classes`` (and the window, the mel bins) come from the data: a value of one's own that
    contradicts it was an internal error (a tensor size mismatch) after the features were computed."""
    assert main(["train", str(tiny_config), "--set", "model.config.num_classes=10", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"streamd: error: {tiny_config}: model.config: num_classes = 10 contradicts the data's labels "
        f"({len(CATEGORIES)}): leave it out, it comes from there\n"
    )
    assert not (tiny_config.parent / "cache").exists()  # said before any feature is computed
    text = tiny_config.read_text().replace("channels = [8, 16]", "channels = [8, 16]\nnum_mel_bins = 128")
    with pytest.raises(
        ExperimentConfigError, match=r"num_mel_bins = 128 contradicts features\.num_mel_bins \(64\)"
    ):
        load_experiment(_write(tiny_config, text))


def test_the_held_out_report_is_what_evaluate_says_of_the_checkpoint(
    tiny_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Training's report loads the checkpoint as `streamd evaluate` does (the served form: an AST's fast
    path; the precision --precision auto picks): the two gave other scores for an AST."""
    model = (
        '[model]\narch = "ast"\n\n[model.config]\nsize = "custom"\nembed_dim = 32\ndepth = 2\n'
        'num_heads = 2\nstem = "conv"\nstem_channels = 4\nfstride = 16\ntstride = 16\n'
    )
    text = tiny_config.read_text()
    text = text[: text.index("[model]")] + model + text[text.index("[train]") :]
    text = text.replace('mode = "cv"', 'mode = "single"').replace(
        "folds = [1, 2]", "folds = [1, 2]\nval_folds = [2]"
    )
    config = _write(tiny_config, text)  # trained in fp32: the report is still in evaluate's (auto) precision
    exp = load_experiment(config, ["train.epochs = 1"])
    summary = run_experiment(exp, progress=False)
    checkpoint = exp.output_dir / "single" / "model.safetensors"
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--config", str(config), "--folds", "2",
                 "--cache-dir", str(exp.cache_dir), "--json"]) == 0  # fmt: skip
    evaluated = json.loads(capsys.readouterr().out)
    run = summary["runs"][0]
    assert (run["accuracy"], run["mAP"]) == (evaluated["accuracy"], evaluated["mAP"])


def test_another_mode_into_the_same_folder_keeps_the_earlier_summary(tiny_config: Path) -> None:
    exp = load_experiment(tiny_config, ["train.epochs = 1"])
    run_experiment(exp, progress=False)
    cv = (exp.output_dir / "summary.md").read_text()
    run_experiment(
        load_experiment(tiny_config, ['experiment.mode = "full"', "train.epochs = 1"]), progress=False
    )
    assert (exp.output_dir / "summary_cv.md").read_text() == cv  # was overwritten by the full run's
    assert (exp.output_dir / "confusion_cv.png").exists() and not (exp.output_dir / "confusion.png").exists()
    assert json.loads((exp.output_dir / "summary.json").read_text())["mode"] == "full"


def test_reader_options_take_each_form_their_reader_takes() -> None:
    """One datafile given as a string is the json reader's own form (it was refused once types were
    checked); a fold count of 5.0 gave float folds that the checkpoint's record then dropped."""
    from training.readers import option_problem

    assert option_problem("json", "datafiles", "train.json") is None
    assert option_problem("json", "datafiles", ["a.json", "b.json"]) is None
    assert (
        option_problem("json", "datafiles", ["a.json", ""])
        == "must be a path or a list of paths, got ['a.json', '']"
    )
    assert option_problem("folders", "num_folds", 5) is None
    assert option_problem("folders", "num_folds", 5.0) == "must be a whole number >= 1, got 5.0"
    assert option_problem("esc50", "audio_dir", "") == "must be a path (a non-empty string), got ''"
    assert (
        option_problem("own", "holdout_frac", 0.2) is None
        and option_problem("own", "holdout_frac", 1) is None
    )


def test_config_json_records_the_out_given_and_survives_a_refused_rerun(
    tiny_config: Path, tmp_path: Path
) -> None:
    """config.json named the TOML's output_dir though --out was used; and a rerun refused for other settings
    (its saved state was made with others) overwrote it with the settings of a run that never happened."""
    out = tmp_path / "elsewhere"
    base = ["train", str(tiny_config), "--mode", "single", "--set", "data.val_folds=[2]", "--out", str(out)]
    assert main([*base, "--set", "train.epochs=1"]) == 0
    recorded = (out / "config.json").read_text()
    assert json.loads(recorded)["experiment"]["output_dir"] == str(out)
    state = out / "single" / "train_state.safetensors"
    assert state.exists()
    assert main([*base, "--set", "train.epochs=1", "--set", "train.lr=0.05"]) == 2  # refused: other settings
    assert (out / "config.json").read_text() == recorded


def test_evaluate_config_caches_features_where_its_training_did(
    tiny_config: Path, tmp_path: Path, monkeypatch
) -> None:
    """evaluate --config cached into ./.cache/fbank, not the config's experiment.cache_dir."""
    out = tmp_path / "ev"
    args = ["--mode", "single", "--set", "data.val_folds=[2]", "--set", "train.epochs=1", "--out", str(out)]
    assert main(["train", str(tiny_config), *args, "--no-progress"]) == 0
    cache = tmp_path / "cache"  # the fixture's experiment.cache_dir
    for item in cache.iterdir():
        item.unlink()
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    checkpoint = out / "single" / "model.safetensors"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--config", str(tiny_config), "--json"]) == 0
    assert any(cache.iterdir()) and not (workdir / ".cache").exists()
