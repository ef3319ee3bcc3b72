"""Resuming on the same clips whose features were computed elsewhere (rounded differently): allowed;
resuming on other clips or other labels: refused, unless --accept-data-change asks for it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from support.paths import ESC50, clip_paths

from audio_core.audio_file import read_audio
from audio_core.fbank import fbank_frames, fbank_frames_reference
from models.common import FeatureConfig, ModelInfo, Normalization
from training.resume import ResumeMismatch, check_resume, data_digest, fingerprint, same_data
from training.train_config import TrainConfig

CFG = FeatureConfig(num_mel_bins=64)


def _features(paths: list[Path], fbank: Callable[..., torch.Tensor]) -> np.ndarray:
    out = []
    for path in paths:
        samples = torch.from_numpy(read_audio(path))
        n = CFG.num_frames(samples.numel())
        out.append(fbank(samples.unfold(0, CFG.frame_length, CFG.frame_shift)[:n], CFG).numpy())
    return np.stack(out)


@pytest.fixture(scope="module")
def clips() -> list[Path]:
    if not ESC50.exists():
        pytest.skip(f"ESC-50 not found at {ESC50}")
    return clip_paths(7)


@pytest.fixture(scope="module")
def fast(clips: list[Path]) -> np.ndarray:
    return _features(clips[:6], fbank_frames)


@pytest.fixture(scope="module")
def recomputed(clips: list[Path]) -> np.ndarray:
    """The same clips through the plain fbank: other float operations, the same values up to rounding."""
    return _features(clips[:6], fbank_frames_reference)


LABELS = np.arange(6, dtype=np.int64)


def test_the_same_clips_recomputed_are_the_same_data(fast: np.ndarray, recomputed: np.ndarray) -> None:
    a, b = data_digest(fast, LABELS), data_digest(recomputed, LABELS)
    assert a["digest"] != b["digest"]  # the bytes differ: the exact digest alone would refuse
    assert same_data(a, b)


def test_other_clips_or_labels_are_other_data(clips: list[Path], fast: np.ndarray) -> None:
    other = fast.copy()
    other[2] = _features([clips[6]], fbank_frames)[0]
    assert not same_data(data_digest(fast, LABELS), data_digest(other, LABELS))
    assert not same_data(data_digest(fast, LABELS), data_digest(fast, LABELS[::-1].copy()))
    assert not same_data(data_digest(fast, LABELS), data_digest(fast[:5], LABELS[:5]))
    slightly = fast.copy()
    slightly[0] += 0.05  # a gain change, far above rounding
    assert not same_data(data_digest(fast, LABELS), data_digest(slightly, LABELS))


def _fingerprint(x: np.ndarray, y: np.ndarray) -> dict:
    info = ModelInfo("resnet_cnn", {"num_classes": 6}, list("abcdef"), CFG, Normalization())
    return {**fingerprint(TrainConfig(), info), "data": data_digest(x, y)}


def test_check_resume_on_data(fast: np.ndarray, recomputed: np.ndarray) -> None:
    saved = _fingerprint(fast, LABELS)
    assert check_resume(Path("state"), saved, _fingerprint(recomputed, LABELS)) is None
    changed = _fingerprint(fast, LABELS[::-1].copy())
    with pytest.raises(ResumeMismatch, match=r"^state: .*different data.*--fresh"):
        check_resume(Path("state"), saved, changed)
    note = check_resume(Path("state"), saved, changed, accept_data_change=True)
    assert note is not None and "--accept-data-change" in note
    other_settings = _fingerprint(fast, LABELS[::-1].copy())
    other_settings["train"]["lr"] = 1.0
    with pytest.raises(ResumeMismatch, match=r"train\.lr"):  # the flag excuses the data only
        check_resume(Path("state"), saved, other_settings, accept_data_change=True)


def test_a_state_without_a_sketch_names_the_flag(fast: np.ndarray, recomputed: np.ndarray) -> None:
    saved = _fingerprint(fast, LABELS)
    del saved["data"]["sketch"]  # as saved by a streamd that fingerprinted the bytes only
    with pytest.raises(ResumeMismatch, match=r"--accept-data-change resumes"):
        check_resume(Path("state"), saved, _fingerprint(recomputed, LABELS))
    assert check_resume(Path("state"), saved, _fingerprint(fast, LABELS)) is None


def test_changed_settings_are_named_before_the_data(fast: np.ndarray, recomputed: np.ndarray) -> None:
    """A changed window or statistic changes the features too: the settings are what to name."""
    saved = _fingerprint(fast, LABELS)
    current = _fingerprint(fast[:5], LABELS[:5])
    current["normalization"]["mean"] = -7.25
    with pytest.raises(
        ResumeMismatch,
        match=r"configuration \(normalization\.mean: .*-> -7\.25; and the training "
        r"data: 6 -> 5 training examples\)",
    ):
        check_resume(Path("state"), saved, current, accept_data_change=True)
    same_clips = _fingerprint(recomputed, LABELS)
    same_clips["normalization"]["mean"] = -7.25
    with pytest.raises(ResumeMismatch, match=r"configuration \(normalization\.mean: [^;]*\); start over"):
        check_resume(Path("state"), saved, same_clips)


def test_after_fresh_ctrl_c_never_points_back_to_an_older_state(tmp_path: Path) -> None:
    """``--fresh`` in cv: the other folds' states from before the command are not this run's, so the
    Ctrl-C line names only states written since it started (or none)."""
    import os
    import time

    from safetensors.torch import save_file

    from training.resume import interrupted_line

    old = tmp_path / "out" / "fold2" / "train_state.safetensors"
    old.parent.mkdir(parents=True)
    save_file({"x": torch.zeros(1)}, str(old), metadata={"state": '{"epoch": 30}'})
    os.utime(old, (time.time() - 60, time.time() - 60))
    started = time.time()
    assert "no training state was saved yet" in interrupted_line(tmp_path / "out", fresh=True, since=started)
    new = tmp_path / "out" / "fold1" / "train_state.safetensors"
    new.parent.mkdir()
    save_file({"x": torch.zeros(1)}, str(new), metadata={"state": '{"epoch": 2}'})
    os.utime(new, (started + 1, started + 1))  # file times are coarse: it may read a few ms before `started`
    line = interrupted_line(tmp_path / "out", fresh=True, since=started)
    assert f"after epoch 2 is saved in {new}; run the command again without --fresh" in line


def test_fresh_and_accept_data_change_together_are_refused(tmp_path: Path) -> None:
    from support.process import assert_clean_error, run_streamd

    result = run_streamd("train", "--data", tmp_path, "--fresh", "--accept-data-change")
    assert_clean_error(result, "--accept-data-change resumes a saved state and --fresh starts over")
    both = run_streamd("train", "--data", tmp_path / "missing", "--epochs", "2", "--set", "train.epochs=3")
    assert_clean_error(both, "--epochs and --set train.epochs both given")  # before the data is read
    elsewhere = run_streamd("train", "--data", tmp_path, "--set", "experiment.output_dir='x'")
    assert_clean_error(elsewhere, "--set experiment.output_dir: with --data the output folder is --out")


@pytest.mark.parametrize(
    "option, given, key",
    [
        (("--mode", "single"), "experiment.mode='cv'", "experiment.mode"),
        (("--compute", "cpu"), "train={compute='auto'}", "train.compute"),
        (("--out", "o"), "experiment.output_dir='p'", "experiment.output_dir"),
        (("--init", "default"), "model.init='x.safetensors'", "model.init"),
    ],
)
def test_an_option_and_a_set_of_its_key_are_refused_together(option, given, key) -> None:
    """The option silently won over a contradicting ``--set`` of the key it stands for."""
    from support.paths import REPO
    from support.process import assert_clean_error, run_streamd

    config = REPO / "configs" / "train" / "esc50_resnet_cnn.toml"
    result = run_streamd("train", config, *option, "--set", given, "--print-config")
    assert_clean_error(result, f"{option[0]} and --set {key} both given: give one of them")
