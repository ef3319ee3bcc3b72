"""``streamd classify`` on real clips with a checkpoint trained here: whole-file scoring against a plain
per-window reference, JSON output, long and short files, and bad files among good ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from esc50_subset import small_esc50_rows

from audio_core.audio_file import read_audio
from audio_core.fbank import compute_fbank
from audio_core.windows import WindowPlan
from models.checkpoint import load_checkpoint
from models.common import FeatureConfig
from streamd.cli import main
from training.evaluate import waveform_scores

SR = 16000


def _plain_scores(model, info, wave: np.ndarray, hop_s: float) -> np.ndarray:
    """Reference: 5-s pieces of the waveform every hop (and one flush with the end), each fbank on its own."""
    window_n = 5 * SR  # 498 frames, and the whole frame shifts that hold them
    hop_n = round(hop_s * SR)
    if wave.size <= window_n:
        pieces = [np.concatenate([wave, np.zeros(window_n - wave.size, dtype=np.float32)])]  # silence
    else:
        starts = list(range(0, wave.size - window_n + 1, hop_n))
        last = (wave.size - window_n) // info.features.frame_shift * info.features.frame_shift
        if starts[-1] != last:
            starts.append(last)
        pieces = [wave[s : s + window_n] for s in starts]
    rows = []
    with torch.no_grad():
        for piece in pieces:
            fbank = compute_fbank(piece, info.features)[: info.normalization.target_frames]
            logits = model(((fbank - info.normalization.mean) / (2 * info.normalization.std))[None])
            rows.append(torch.softmax(logits, dim=1)[0].numpy())
    return np.mean(rows, axis=0)


@pytest.fixture(scope="module")
def clip_paths(esc50_root: Path) -> list[Path]:
    return [
        esc50_root / "audio" / r["filename"] for r in small_esc50_rows(("dog", "rooster", "rain"), 1, (3,))
    ]


def test_window_starts() -> None:
    plan = WindowPlan.from_frames(498, 2.5, FeatureConfig())
    assert plan.window_samples == 5 * SR and plan.window_s == 5.0
    assert plan.starts(100) == [0] and plan.starts(5 * SR) == [0]
    assert plan.starts(10 * SR + 320) == [0, 40000, 80000, 80320]  # the last one flush with the end
    assert plan.starts(10 * SR) == [0, 40000, 80000]


def test_long_and_short_files_match_the_plain_reference(
    trained_checkpoint: Path, clip_paths, tmp_path
) -> None:
    model, info = load_checkpoint(trained_checkpoint)
    waves = [read_audio(p) for p in clip_paths]
    long_wave = np.concatenate(waves + waves[:1])  # 20 s
    short_wave = waves[0][: SR + 123]  # 1 s: padded with silence to one window
    for wave, hop in ((long_wave, 2.5), (long_wave, 1.3), (short_wave, 2.5), (waves[1], 2.5)):
        np.testing.assert_allclose(
            waveform_scores(model, info, wave, hop), _plain_scores(model, info, wave, hop), atol=2e-5
        )


def test_classify_json_and_text(trained_checkpoint: Path, clip_paths, tmp_path: Path, capsys) -> None:
    model, info = load_checkpoint(trained_checkpoint)
    long_path = tmp_path / "long.wav"
    stereo = np.stack([np.concatenate([read_audio(p) for p in clip_paths])] * 2, axis=1)
    sf.write(long_path, stereo, 22050)  # stereo, written as if at another rate: 15 s become ~10.9 s
    paths = [*clip_paths, long_path]
    argv = ["classify", *map(str, paths), "--checkpoint", str(trained_checkpoint), "--json", "--top-k", "2"]
    code = main([*argv, "--precision", "fp32"])  # the reference below is fp32; auto may pick bf16 here
    out = capsys.readouterr()
    assert code == 0, out.err
    objects = [json.loads(line) for line in out.out.splitlines()]
    assert [o["file"] for o in objects] == list(map(str, paths))
    for obj, path in zip(objects, paths, strict=True):
        assert [set(x) for x in obj["labels"]] == [{"label", "score"}] * 2
        expected = waveform_scores(model, info, read_audio(path))
        assert obj["labels"][0]["label"] == info.labels[int(expected.argmax())]
        assert obj["labels"][0]["score"] == pytest.approx(float(expected.max()), abs=1e-6)
        assert obj["labels"][0]["score"] >= obj["labels"][1]["score"]
    code = main(["classify", str(clip_paths[0]), "--checkpoint", str(trained_checkpoint), "--top-k", "9"])
    text = capsys.readouterr().out
    assert code == 0 and text.startswith(f"{clip_paths[0]}: ") and text.count(" 0.") + text.count(" 1.") == 3


def test_bad_files_are_reported_and_the_rest_classified(
    trained_checkpoint: Path, clip_paths, tmp_path, capsys
) -> None:
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    tiny = tmp_path / "tiny.wav"
    tone = 0.1 * np.sin(np.arange(100, dtype=np.float32))  # shorter than one frame: padded, as replay does
    sf.write(tiny, tone.astype(np.float32), SR)
    missing = tmp_path / "missing.flac"
    args = [
        str(not_audio),
        str(clip_paths[0]),
        str(missing),
        str(tiny),
        "--checkpoint",
        str(trained_checkpoint),
    ]
    code = main(["classify", *args, "--json"])
    out = capsys.readouterr()
    assert code == 1
    assert [json.loads(line)["file"] for line in out.out.splitlines()] == [str(clip_paths[0]), str(tiny)]
    errors = out.err.splitlines()
    assert errors[0].startswith(f"streamd: error: {not_audio}: ")
    assert errors[1].startswith(f"streamd: error: {missing}: ")
    assert errors[2].startswith(f"streamd: note: {tiny}: ") and "padded with silence" in errors[2]
    assert "2 of 4 file(s) could not be classified" in errors[3]
    assert "Traceback" not in out.err


def test_checkpoint_and_option_errors(clip_paths, tmp_path, capsys) -> None:
    assert main(["classify", str(clip_paths[0]), "--checkpoint", str(tmp_path / "none.safetensors")]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    assert main(["classify", str(clip_paths[0]), "--checkpoint", str(broken)]) == 2
    assert str(broken) in capsys.readouterr().err
    assert main(["classify", str(clip_paths[0]), "--checkpoint", str(broken), "--top-k", "0"]) == 2
    assert "--top-k must be at least 1" in capsys.readouterr().err


def test_unknown_model_name(clip_paths, capsys) -> None:
    assert main(["classify", str(clip_paths[0]), "--model", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamd: error: unknown model 'nosuch'") and "Traceback" not in err
