"""``streamd evaluate``: clip-level metrics and files on real held-out clips, and streaming evaluation
through the daemon's replay, checked against the offline reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from esc50_subset import write_esc50_subset

from models.checkpoint import load_checkpoint
from streamd.cli import main
from training.evaluate import clip_scores
from training.readers import read_esc50

CATEGORIES = ("dog", "rooster", "rain")


@pytest.fixture(scope="module")
def held_out_csv(tmp_path_factory: pytest.TempPathFactory, esc50_root: Path) -> Path:
    return write_esc50_subset(tmp_path_factory.mktemp("heldout"), CATEGORIES, 2, (3, 4))


def test_clip_level_report(
    trained_checkpoint: Path, held_out_csv: Path, esc50_root: Path, tmp_path, capsys
) -> None:
    audio = esc50_root / "audio"
    args = [
        "evaluate",
        "--checkpoint",
        str(trained_checkpoint),
        "--esc50",
        str(held_out_csv),
        "--audio-dir",
        str(audio),
    ]
    code = main(
        [*args, "--folds", "4", "--out", str(tmp_path / "ev"), "--cache-dir", str(tmp_path / "c"), "--json"]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    model, info = load_checkpoint(trained_checkpoint)
    clips = read_esc50(held_out_csv, audio_dir=audio, folds=[4])
    scores = clip_scores(model, info, clips, None)
    truth = np.array([info.labels.index(clips.labels[c.targets[0]]) for c in clips.clips])
    assert report["num_examples"] == 6
    assert report["accuracy"] == pytest.approx(float((scores.argmax(1) == truth).mean()))
    assert np.array(report["confusion_matrix"]).sum() == 6
    assert set(report["per_class_accuracy"]) == set(info.labels)
    for name in ("report.json", "report.md", "confusion.png"):
        assert (tmp_path / "ev" / name).stat().st_size > 100
    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 0  # markdown to stdout, all folds
    text = capsys.readouterr().out
    assert "- examples: 12" in text and "| rain |" in text


def test_evaluate_errors(
    trained_checkpoint: Path, held_out_csv: Path, esc50_root: Path, tmp_path, capsys
) -> None:
    base = ["evaluate", "--checkpoint", str(trained_checkpoint), "--audio-dir", str(esc50_root / "audio")]
    assert main(base) == 2
    assert "exactly one of --config" in capsys.readouterr().err
    assert main([*base, "--esc50", str(held_out_csv), "--folds", "9"]) == 2
    assert "folds [9] have no clips" in capsys.readouterr().err
    other = write_esc50_subset(tmp_path, ("siren",), 1, (1,))
    assert main([*base, "--esc50", str(other)]) == 2
    assert "does not know the label(s) ['siren']" in capsys.readouterr().err


def test_streaming_replay_matches_offline_reference(
    trained_checkpoint: Path, held_out_csv: Path, esc50_root: Path, tmp_path, capsys
):
    args = ["evaluate", "--checkpoint", str(trained_checkpoint), "--esc50", str(held_out_csv), "--streaming"]
    args += ["--audio-dir", str(esc50_root / "audio")]
    args += ["--clips", "4", "--hops", "1.0", "2.5", "--gap-s", "1", "2", "--seed", "3", "--json"]
    assert main([*args, "--out", str(tmp_path / "daemon")]) == 0, capsys.readouterr().err
    daemon = json.loads(capsys.readouterr().out)
    assert main([*args, "--out", str(tmp_path / "offline"), "--offline"]) == 0
    offline = json.loads(capsys.readouterr().out)
    assert [r["hop_s"] for r in daemon] == [1.0, 2.5]
    for d, o in zip(daemon, offline, strict=True):
        assert d["windows"] == o["windows"] > 0
        assert d["scored_windows"] == o["scored_windows"]
        assert d["window_accuracy"] == pytest.approx(o["window_accuracy"])
        assert d["onset_delays_s"] == pytest.approx(o["onset_delays_s"], abs=1e-6)
        for latency, delay in zip(d["onset_latencies_s"], d["onset_delays_s"], strict=True):
            assert (latency is None) == (delay is None)
            assert latency is None or delay <= latency < delay + 2.0  # plus the daemon's processing time
        assert d["events"] == 4
    assert daemon[0]["windows"] > daemon[1]["windows"]  # a shorter hop gives more windows
    wave, rate = sf.read(tmp_path / "daemon" / "soundscape0.wav")
    truth = json.loads((tmp_path / "daemon" / "soundscape0.json").read_text())
    assert rate == 16000 and len(truth["events"]) == 4
    assert truth["duration_s"] == pytest.approx(wave.size / rate)
    offline_wave, _ = sf.read(tmp_path / "offline" / "soundscape0.wav")
    np.testing.assert_array_equal(wave, offline_wave)  # the seed fixes the soundscape
