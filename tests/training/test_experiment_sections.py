"""Each experiment config section checks its own values through the shared checker: a bad value in any
section is one line naming the file and the key, in the library and through ``streamd train``."""

from __future__ import annotations

import typing
from dataclasses import fields
from pathlib import Path

import pytest
from support.process import assert_clean_error, run_streamd

from audio_core.checks import check_range
from audio_core.toml_config import check_value
from training.augment import AugmentConfig
from training.distill import DistillConfig
from training.experiment_spec import ExperimentConfigError, ExperimentSection, load_experiment
from training.sequences import SequenceConfig
from training.train_config import TrainConfig

BASE = '[data]\nreader = "esc50"\ncsv_path = "meta.csv"\nval_folds = [1]\n\n[model]\narch = "resnet_cnn"\n'

BAD = {
    "experiment.mode": (
        '[experiment]\nmode = "loo"',
        "experiment.mode must be one of single, cv, full, got 'loo'",
    ),
    "train.epochs": ("[train]\nepochs = 0", "train.epochs must be positive, got 0"),
    "train.label_smoothing": (
        "[train]\nlabel_smoothing = 1",
        "train.label_smoothing must be below 1, got 1.0",
    ),
    "train.min_lr_ratio": ("[train]\nmin_lr_ratio = 0.0", "train.min_lr_ratio must be positive, got 0.0"),
    "train.precision": ('[train]\nprecision = "fp16"', "train.precision must be one of auto, fp32, bf16"),
    "train.type": ('[train]\nepochs = "two"', "train.epochs: expected int, got str 'two'"),
    "train.augment": (
        "[train.augment]\nmixup_prob = 1.5",
        "train.augment.mixup_prob must be at most 1, got 1.5",
    ),
    "train.augment.mixing": (
        '[train.augment]\nmixing = "cutmix"',
        "train.augment.mixing must be one of mixup, bc",
    ),
    "train.distill": (
        '[train.distill]\nteachers = "t.safetensors"\ntemperature = 0',
        "train.distill.temperature must be positive, got 0.0",
    ),
    "train.distill.mode": (
        '[train.distill]\nmode = "live"',
        "train.distill.mode must be one of cached, online",
    ),
    "train.sequences": (
        "[train.sequences]\nlength_s = -1.0",
        "train.sequences.length_s must be >= 0, got -1.0",
    ),
    "train.sequences.type": (
        '[train.sequences]\nlength_s = "long"',
        "train.sequences.length_s: expected float",
    ),
    "train.sequences.pair": (
        "[train.sequences]\nbackground_min_dbfs = -30.0",
        "train.sequences.background_min_dbfs must not exceed background_max_dbfs, got -30.0 > -40.0",
    ),
    "model.config": (
        '[model.config]\nchannels = [8, "x"]',
        "model.config.channels[1]: expected int, got str 'x'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_value_in_each_section_is_one_line_naming_file_and_key(case: str, tmp_path: Path) -> None:
    table, expected = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(f"{BASE}\n{table}\n")
    with pytest.raises(ExperimentConfigError) as err:
        load_experiment(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_the_sections_check_themselves_without_a_file() -> None:
    for build, message in (
        (lambda: TrainConfig(ema_decay=1.0), r"train\.ema_decay must be below 1"),
        (lambda: TrainConfig(lr=float("nan")), r"train\.lr must be a finite number, got nan"),
        (lambda: TrainConfig(batch_size=-4), r"train\.batch_size must be positive"),
        (lambda: AugmentConfig(time_shift_frac=2.0), r"train\.augment\.time_shift_frac must be at most 1"),
        (lambda: DistillConfig(weight=1.5), r"train\.distill\.weight must be at most 1"),
        (lambda: SequenceConfig(gap_min_s=2.0, gap_max_s=1.0), r"gap_min_s must not exceed gap_max_s"),
        (lambda: ExperimentSection(mode="loo"), r"experiment\.mode must be one of single, cv, full"),
    ):
        with pytest.raises(ValueError, match=message):
            build()
    edges = TrainConfig(min_lr_ratio=1.0, ema_decay=0.0, label_smoothing=0.0, warmup_epochs=0.0)
    assert edges.min_lr_ratio == 1.0 and edges.ema_decay == 0.0
    assert TrainConfig(backbone_lr_scale=0.0, eval_every=0).backbone_lr_scale == 0.0  # frozen backbone


FREE = {"seed", "name", "output_dir", "cache_dir"}  # any int / any string is a valid value


@pytest.mark.parametrize(
    "cls", [TrainConfig, AugmentConfig, DistillConfig, SequenceConfig, ExperimentSection]
)
def test_every_scalar_field_declares_its_rule_next_to_it(cls: type) -> None:
    hints = typing.get_type_hints(cls)
    scalar = (int, float, str)
    unruled = [f.name for f in fields(cls) if hints[f.name] in scalar and "choices" not in f.metadata]
    assert sorted(set(unruled) - FREE) == []


def test_tuple_hints_take_toml_lists() -> None:
    assert check_value([8, 16], tuple[int, ...], "k", ValueError) == (8, 16)
    assert check_value([], tuple[int, ...], "k", ValueError) == ()
    assert check_value([1, 2.5], tuple[int, float], "k", ValueError) == (1, 2.5)
    for value, hint, message in (
        (64, tuple[int, ...], r"^k: expected a list, got int$"),
        ([8, True], tuple[int, ...], r"^k\[1\]: expected int, got bool True$"),
        ([1], tuple[int, float], r"^k: expected a list of 2 items, got 1$"),
    ):
        with pytest.raises(ValueError, match=message):
            check_value(value, hint, "k", ValueError)
    assert check_value(None, int | None, "k", ValueError) is None  # a checkpoint's JSON may hold null


def test_an_upper_bound_that_excludes_itself() -> None:
    check_range(0.999, "a.b", ge=0, lt=1)
    for value in (1.0, 2):
        with pytest.raises(ValueError, match=r"a\.b must be below 1"):
            check_range(value, "a.b", ge=0, lt=1)
    for value in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"a\.b must be"):
            check_range(value, "a.b", lt=1)


def test_streamd_train_refuses_a_bad_section_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"{BASE}\n[train.augment]\nmixing = 'cutmix'\n")
    result = run_streamd("train", path, timeout=180)
    line = assert_clean_error(result, f"{path}: train.augment.mixing must be one of mixup, bc", exit_code=2)
    assert result.stderr_lines == [line]
