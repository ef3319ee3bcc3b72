"""``--precision auto``: bf16 where the hardware runs it natively, fp32 elsewhere or for a model that
disagrees with fp32 in bf16; the choice is what the loaded model runs and says."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from audio_core.fbank import compute_fbank
from models import bf16 as precision_module
from models.bf16_agreement import bf16_agreement, record_bf16_agreement
from models.checkpoint import load_checkpoint, read_info, update_extra
from models.inference import prepare_for_inference
from models.precision import choose_precision, cpu_flags, native_bf16
from streamd.errors import ConfigError
from streamd.model_loading import load_model

REPO = Path(__file__).resolve().parents[2]
AVX512_BF16 = {"fpu", "avx2", "avx512f", "avx512_bf16"}
AMX = {"fpu", "avx2", "amx_tile", "amx_bf16"}
AVX2_ONLY = {"fpu", "sse4_2", "avx2", "fma"}


@pytest.mark.parametrize(
    ("flags", "expected"), [(AVX512_BF16, "bf16"), (AMX, "bf16"), (AVX2_ONLY, "fp32"), (set(), "fp32")]
)
def test_auto_picks_by_cpu_flags(flags, expected):
    choice = choose_precision("auto", "cpu", {}, flags=flags)
    assert choice.precision == expected and choice.reason.startswith("auto: ")


@pytest.mark.parametrize(("agreement", "expected"), [(0.985, "fp32"), (0.99, "bf16"), (1.0, "bf16")])
def test_auto_follows_the_checkpoints_bf16_agreement(agreement, expected):
    choice = choose_precision("auto", "cpu", {"bf16_agreement": agreement}, flags=AVX512_BF16)
    assert choice.precision == expected
    if expected == "fp32":
        assert "98.5 %" in choice.reason


def test_explicit_precisions_are_taken_as_asked_and_bad_ones_refused():
    for asked in ("fp32", "bf16", "int8"):
        assert choose_precision(asked, "cpu", {"bf16_agreement": 0.5}, flags=AVX2_ONLY).precision == asked
    with pytest.raises(ValueError, match="one of auto, fp32, bf16, int8"):
        choose_precision("fp16", "cpu", {})
    with pytest.raises(ValueError, match="CPU only"):
        choose_precision("int8", "cuda", {})


def test_cuda_bf16_support_decides_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # no CUDA here: the only mock
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert native_bf16("cuda") == (True, "CUDA with bf16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_precision("auto", "cuda", {}).precision == "fp32"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()
    assert cpu_flags(Path("/proc/cpuinfo")) == cpu_flags()  # this machine's, whatever they are


def test_loaded_model_runs_and_states_the_auto_choice(monkeypatch, small_checkpoint, tmp_path):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: AVX512_BF16)
    loaded = load_model(small_checkpoint, compute="cpu")
    assert (loaded.precision, loaded.precision_reason) == ("bf16", "auto: CPU has avx512_bf16")
    low = tmp_path / "low.safetensors"
    shutil.copy(small_checkpoint, low)
    update_extra(low, {"bf16_agreement": 0.9})
    assert load_model(low, compute="cpu").precision == "fp32"
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: AVX2_ONLY)
    assert load_model(small_checkpoint, compute="cpu").precision == "fp32"
    with pytest.raises(ConfigError, match="precision must be one of"):
        load_model(small_checkpoint, compute="cpu", precision="half")


def test_recorded_agreement_is_measured_on_real_windows_and_weights_stay(small_checkpoint, clips, tmp_path):
    path = tmp_path / "m.safetensors"
    shutil.copy(small_checkpoint, path)
    before, _ = load_checkpoint(path)
    info = read_info(path)
    fbanks = [compute_fbank(_mono(p), info.features) for p in clips]
    frames = min(f.shape[0] for f in fbanks)
    agreement = record_bf16_agreement(path, [f[:frames] for f in fbanks])
    after, after_info = load_checkpoint(path)
    assert after_info.extra["bf16_agreement"] == round(agreement, 4)
    assert after_info.extra["bf16_agreement_windows"] == len(clips)
    for (name, a), (_, b) in zip(before.state_dict().items(), after.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    windows = info.normalization.apply(torch.stack([f[:frames] for f in fbanks]))
    served = prepare_for_inference(copy.deepcopy(before), "bf16")  # what the daemon runs in bf16
    assert bf16_agreement(before, windows, served) == agreement


def _mono(path: Path) -> np.ndarray:
    from audio_core.audio_file import read_audio

    return read_audio(path)


def test_training_resolves_auto_by_the_same_cpu_rule(monkeypatch):
    from models.bf16 import resolve_auto

    monkeypatch.setattr(precision_module, "cpu_flags", lambda: AVX512_BF16)
    assert resolve_auto("auto") == "bf16"
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: AVX2_ONLY)
    assert resolve_auto("auto") == "fp32"
    assert resolve_auto("bf16") == "bf16"  # an explicit choice is taken as asked


def test_auto_treats_a_recurrent_model_by_the_same_rule(monkeypatch):
    """A recurrent model follows the same rule as a windowed one (bf16 on native hardware unless its
    recorded agreement is below 99 %): its served form keeps the mixers in float32 under autocast."""
    from audio_core.shipped_models import shipped_model_path

    path = shipped_model_path("recurrent")
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: AVX512_BF16)
    loaded = load_model(path, compute="cpu")
    assert loaded.recurrent and loaded.precision == "bf16"
    assert all(block.mixer.frozen for block in loaded.model.blocks())
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: AVX2_ONLY)
    assert load_model(path, compute="cpu").precision == "fp32"
    assert load_model(path, compute="cpu", precision="bf16").precision == "bf16"


def test_recurrent_catch_up_equals_step_by_step_in_bf16():
    """In bf16 (the stem and head; the mixers stay fp32) a catch-up chunk of the shipped recurrent model
    still equals its step-by-step results (<= 1e-4) on real audio, so a replay's results do not depend on
    how its columns were grouped."""
    from audio_core.audio_file import read_audio
    from audio_core.scoring import chunk_scores, step_scores
    from audio_core.shipped_models import shipped_model_path

    loaded = load_model(shipped_model_path("recurrent"), compute="cpu", precision="bf16")
    model, info, frames = loaded.model, loaded.info, loaded.model.column_frames
    fbank = compute_fbank(read_audio(REPO / "examples" / "long.wav"), info.features)[: 64 * frames][None]
    chunk, _ = chunk_scores(model, info, fbank, model.init_state(1), precision="bf16")
    state, steps = model.init_state(1), []
    for i in range(64):
        scores, state = step_scores(
            model, info, fbank[:, i * frames : (i + 1) * frames], state, precision="bf16"
        )
        steps.append(scores)
    assert chunk.shape == (64, len(info.labels))
    assert (chunk - torch.cat(steps)).abs().max() <= 1e-4
