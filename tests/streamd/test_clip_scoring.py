"""Whole-file scoring read window by window (``streamd.clip_scoring``) equals the in-memory reference
``training.evaluate.waveform_scores`` on real clips: windowed and recurrent models, long files at another
rate and channel count, files shorter than one window, any read block size; bad files are one clear error."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from support.checkpoints import NUM_MEL_BINS, small_resnet_checkpoint

from audio_core.audio_file import read_audio, read_chunks
from audio_core.fbank import compute_fbank
from audio_core.windows import checkpoint_plan, clip_hop_s
from models.common import FeatureConfig, ModelInfo
from models.registry import build_model
from streamd.clip_scoring import score_file
from streamd.errors import AudioInputError
from streamd.model_loading import LoadedModel, load_model
from training.evaluate import waveform_scores

SR = 16000
TOLERANCE = 2e-5


@pytest.fixture(scope="module")
def windowed(tmp_path_factory: pytest.TempPathFactory, esc50) -> LoadedModel:
    """A small residual CNN whose (seeded, random) scores depend visibly on the audio."""
    path = tmp_path_factory.mktemp("ckpt") / "gain.safetensors"
    return load_model(
        small_resnet_checkpoint(path, esc50.labels, seed=3, head_gain=40.0), compute="cpu", precision="fp32"
    )


@pytest.fixture(scope="module")
def mamba(esc50) -> LoadedModel:
    """A small causal streaming Mamba (seeded) with 16-frame columns."""
    labels = esc50.labels
    config = {"num_classes": len(labels), "num_mel_bins": NUM_MEL_BINS, "d_model": 32, "n_layers": 2}
    torch.manual_seed(4)
    model = build_model("streaming_mamba", {**config, "dropout": 0.0}).eval()
    info = ModelInfo("streaming_mamba", config, labels, FeatureConfig(num_mel_bins=NUM_MEL_BINS))
    return LoadedModel(model, info, "mamba", torch.device("cpu"))


@pytest.fixture(scope="module")
def mamba_int8(mamba: LoadedModel) -> LoadedModel:
    """The same Mamba with dynamic int8 linear layers (activations quantised per call)."""
    from models.inference import prepare_for_inference

    model = prepare_for_inference(copy.deepcopy(mamba.model), "int8")
    return LoadedModel(model, mamba.info, "mamba", torch.device("cpu"), precision="int8")


@pytest.fixture(scope="module")
def long_file(tmp_path_factory: pytest.TempPathFactory, esc50) -> Path:
    """About 12.3 s of three real clips, stereo at 22.05 kHz (so it is downmixed and resampled)."""
    wave = np.concatenate([esc50.read_mono(p) for p in esc50.clips(3)])[: round(12.3 * SR)]
    path = tmp_path_factory.mktemp("audio") / "long.wav"
    stereo = np.stack([wave * 0.6, wave * 1.4], axis=1)
    sf.write(path, sf_resample(stereo, 22050), 22050, subtype="FLOAT")
    return path


def sf_resample(stereo: np.ndarray, rate: int) -> np.ndarray:
    import soxr

    return soxr.resample(stereo, SR, rate).astype(np.float32)


def write_clip(path: Path, wave: np.ndarray, rate: int = SR) -> Path:
    sf.write(path, wave, rate, subtype="FLOAT")
    return path


def assert_matches_reference(loaded: LoadedModel, path: Path, hop_s: float, **kw) -> None:
    got = score_file(loaded, path, hop_s, **kw)
    want = waveform_scores(loaded.model, loaded.info, read_audio(path), hop_s)
    np.testing.assert_allclose(got.scores, want, atol=TOLERANCE)
    assert want.max() > 1.5 * want.min()  # far from uniform: the comparison means something


def test_read_chunks_equals_loading_the_whole_file(long_file: Path) -> None:
    streamed = np.concatenate(list(read_chunks(long_file, SR, block_s=0.37)))
    whole = read_audio(long_file)
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


@pytest.mark.parametrize(("hop_s", "block_s"), [(2.5, 1.0), (1.3, 0.37), (0.7, 2.0)])
def test_windowed_long_file_equals_the_in_memory_reference(
    windowed: LoadedModel, long_file: Path, hop_s: float, block_s: float
) -> None:
    assert_matches_reference(windowed, long_file, hop_s, block_s=block_s)
    plan = checkpoint_plan(windowed.info, hop_s)
    expected = plan.starts(read_audio(long_file).size)
    result = score_file(windowed, long_file, hop_s, block_s=block_s)
    assert result.windows == len(expected) and result.padded_s == 0.0
    assert expected[-1] % plan.hop_samples != 0  # the last window is the end-aligned one


def _padded_window_scores(loaded: LoadedModel, wave: np.ndarray) -> np.ndarray:
    """Independent of the code under test: silence appended to 5 s by hand, 498 frames, softmax."""
    padded = np.concatenate([wave, np.zeros(5 * SR - wave.size, dtype=np.float32)])
    fbank = compute_fbank(padded, loaded.info.features)[:498]
    norm = loaded.info.normalization
    with torch.no_grad():
        logits = loaded.model(((fbank - norm.mean) / (2 * norm.std))[None])
    return torch.softmax(logits, dim=-1)[0].numpy()


@pytest.mark.parametrize("seconds", [0.01, 0.03, 1.2, 4.99, 5.0])
def test_short_files_are_padded_to_one_window_and_say_so(
    windowed: LoadedModel, esc50, tmp_path: Path, seconds: float
) -> None:
    wave = esc50.read_mono(esc50.clips(1)[0])[: round(seconds * SR)]
    path = write_clip(tmp_path / "short.wav", wave)
    result = score_file(windowed, path, 2.5)
    assert windowed.info.normalization.target_frames == 498  # one window: 5.00 s of samples
    want = _padded_window_scores(windowed, wave)
    np.testing.assert_allclose(result.scores, want, atol=TOLERANCE)
    assert want.max() > 1.5 * want.min()  # far from uniform: the comparison means something
    assert result.windows == 1 and result.duration_s == pytest.approx(seconds)
    assert result.padded_s == pytest.approx(5.0 - seconds)


def test_a_file_holding_the_windows_frames_exactly_is_not_short(
    windowed: LoadedModel, esc50, tmp_path: Path
) -> None:
    """498 frames need 4.985 s (the window is 5.00 s, a whole number of frame shifts): a file of that
    length gets no "padded" note ("4.985 s < 5 s" had been said), one sample less does."""
    samples = (498 - 1) * 160 + 400
    wave = np.concatenate([esc50.read_mono(p) for p in esc50.clips(2)])
    exact = score_file(windowed, write_clip(tmp_path / "exact.wav", wave[:samples]), 2.5)
    assert exact.padded_s == 0.0 and exact.windows == 1
    short = score_file(windowed, write_clip(tmp_path / "short.wav", wave[: samples - 1]), 2.5)
    assert short.padded_s > 0


@pytest.mark.parametrize(("hop_s", "block_s"), [(1.0, 1.0), (0.03, 0.29), (2.2, 0.5)])
def test_recurrent_long_file_equals_the_in_memory_reference(
    tiny_recurrent: LoadedModel, long_file: Path, hop_s: float, block_s: float
) -> None:
    """Hops shorter than a column (several windows end on one step) and longer ones; column 4 frames."""
    assert_matches_reference(tiny_recurrent, long_file, hop_s, block_s=block_s)


@pytest.mark.parametrize("samples", [95000, 95080, 120100, 160100, 160159])
def test_recurrent_end_aligned_window_is_the_references_whatever_the_length(
    mamba: LoadedModel, esc50, tmp_path: Path, samples: int
) -> None:
    """The window flush with the end starts on the frame grid, so it may end one frame before the file's
    last frame (lengths of 80-159 samples past a shift): the streamed score takes that same step."""
    wave = np.concatenate([esc50.read_mono(p) for p in esc50.clips(3)])[:samples]
    path = write_clip(tmp_path / "odd.wav", wave)
    for hop_s in (2.5, 1.0):
        assert_matches_reference(mamba, path, hop_s)


def test_streaming_mamba_long_and_short_files_equal_the_reference(
    mamba: LoadedModel, long_file: Path, esc50, tmp_path: Path
) -> None:
    assert_matches_reference(mamba, long_file, 1.5)
    short = write_clip(tmp_path / "short.wav", esc50.read_mono(esc50.clips(2)[1])[: round(2.1 * SR)])
    result = score_file(mamba, short, 1.5)
    want = waveform_scores(mamba.model, mamba.info, read_audio(short), 1.5)
    np.testing.assert_allclose(result.scores, want, atol=TOLERANCE)
    assert result.padded_s == 0.0 and result.windows == 1


@pytest.mark.parametrize("seconds", [0.05, 0.4, 2.1, 4.9])
def test_recurrent_short_file_is_scored_at_its_last_step_without_padding(
    mamba: LoadedModel, esc50, tmp_path: Path, seconds: float
) -> None:
    """Not after seconds of appended silence (which a model taught that gaps are "nothing" would read as
    no sound): the last whole column of the file itself, as its replay ends; a file shorter than one
    column is completed with silence to one. The expected value is computed by hand: the model's
    forward over the whole columns is its last step."""
    wave = esc50.read_mono(esc50.clips(2)[1])[: round(seconds * SR)]
    path = write_clip(tmp_path / "short.wav", wave)
    result = score_file(mamba, path, 1.0)
    cfg, column = mamba.info.features, int(mamba.model.column_frames)
    if cfg.num_frames(wave.size) < column:
        wave = np.concatenate([wave, np.zeros((column - 1) * cfg.frame_shift + cfg.frame_length - wave.size)])
    fbank = compute_fbank(wave.astype(np.float32), cfg)
    fbank = fbank[: fbank.shape[0] // column * column]
    with torch.no_grad():
        want = torch.softmax(mamba.model(mamba.info.normalization.apply(fbank)[None]), dim=-1)[0].numpy()
    np.testing.assert_allclose(result.scores, want, atol=TOLERANCE)
    assert result.windows == 1
    assert (result.padded_s > 0) == (wave.size > round(seconds * SR))  # completed to one column


def test_bad_files_raise_one_clear_error(windowed: LoadedModel, esc50, tmp_path: Path) -> None:
    wave = esc50.read_mono(esc50.clips(1)[0]).copy()
    wave[3 * SR + 5] = np.nan
    cases = {
        write_clip(tmp_path / "nan.wav", wave): "nan or infinite samples (at 3.000 s)",
        tmp_path / "missing.flac": "no such file",
        tmp_path: "is a directory",
    }
    (tmp_path / "text.wav").write_text("not audio\n" * 50)
    cases[tmp_path / "text.wav"] = "unreadable audio file"
    for path, message in cases.items():
        with pytest.raises(AudioInputError) as info:
            score_file(windowed, path, 2.5)
        text = str(info.value)
        assert text.startswith(f"{path}: ") and message in text.lower() and "\n" not in text


def test_a_file_that_leaves_no_sample_at_the_model_rate_is_one_clear_error(
    windowed: LoadedModel, mamba: LoadedModel, tmp_path: Path
) -> None:
    """One sample at 48 kHz resamples to none at 16 kHz: an input error naming the file (it was an
    internal assertion for recurrent models), not a score."""
    path = tmp_path / "one.wav"
    sf.write(path, np.array([0.5], dtype=np.float32), 48000)
    for loaded in (windowed, mamba):
        with pytest.raises(AudioInputError, match=r"1 sample\(s\) at 48000 Hz leave none at 16000 Hz"):
            score_file(loaded, path, 1.0)


def test_the_clip_hop_covers_a_short_window_models_whole_file() -> None:
    """Clip-level scores step 2.5 s through a long file, or half the model's window when that is shorter
    (a 0.5-s model at 2.5 s would skip 80 % of the file)."""
    from audio_core.windows import checkpoint_window_s, clip_hop_s
    from models.common import FeatureConfig, ModelInfo, Normalization

    def info(frames: int) -> ModelInfo:
        return ModelInfo(
            "resnet_cnn", {}, ["a", "b"], FeatureConfig(num_mel_bins=32), Normalization(0.0, 1.0, frames)
        )

    assert clip_hop_s(info(498)) == 2.5  # ESC-50's 5-s window: as before
    assert checkpoint_window_s(info(48)) == pytest.approx(0.5) and clip_hop_s(info(48)) == 0.25
    assert clip_hop_s(info(1)) == 0.01  # never below one frame shift


@pytest.mark.parametrize("model", ["windowed", "mamba", "mamba_int8"])
def test_evaluate_scores_every_clip_as_classify_scores_the_file(
    model: str, request: pytest.FixtureRequest, long_file: Path, esc50, tmp_path: Path
) -> None:
    """One clip rule: ``evaluate`` / training's reports (``clip_scores``) and ``classify`` (``score_file``)
    agree on a clip longer than the window (the mean of its windows, not its first), one of exactly one
    window, and one shorter than a window; in int8 too (a recurrent model's clip of one window was run in
    one call, whose activations dynamic int8 scales together, while classify steps column by column)."""
    from training.clips import Clip, ClipSet
    from training.evaluate import clip_scores

    loaded: LoadedModel = request.getfixturevalue(model)
    whole = esc50.clips(1)[0]
    short = write_clip(tmp_path / "short.wav", esc50.read_mono(whole)[: 2 * SR])
    paths = [long_file, whole, short]
    clip_set = ClipSet([Clip(p, (0,)) for p in paths], loaded.info.labels)
    got = clip_scores(loaded.model, loaded.info, clip_set, tmp_path / "cache", precision=loaded.precision)
    hop_s = clip_hop_s(loaded.info)
    for row, path in zip(got, paths, strict=True):
        np.testing.assert_allclose(row, score_file(loaded, path, hop_s).scores, atol=TOLERANCE)
    first_window = waveform_scores(
        loaded.model, loaded.info, read_audio(long_file)[: 5 * SR], precision=loaded.precision
    )
    assert not np.allclose(got[0], first_window, atol=1e-3)  # the long file is not scored on its first window
