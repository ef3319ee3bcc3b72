"""``streamd evaluate`` options against what other commands say and read: ``--hops`` with a recurrent
model warns as ``replay --hop`` does, and ``--config`` takes a config holding only its ``[data]``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from esc50_subset import write_esc50_subset

from streamd.cli import main
from training.readers import READERS

REPO = Path(__file__).resolve().parents[2]


def _streamd(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "streamd", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("streamd: warning: a hop")]


def test_hops_given_to_a_recurrent_model_warn_as_replay_does(esc50_root: Path, tmp_path: Path) -> None:
    """``evaluate --model recurrent --streaming --hops 1`` said nothing of a hop the model ignores, where
    ``replay --model recurrent --hop 1`` warns: now the same line, and none when --hops is not given."""
    csv_path = write_esc50_subset(tmp_path, ("dog", "rooster"), 1, (4,))
    audio = str(esc50_root / "audio")
    base = ["evaluate", "--model", "recurrent", "--esc50", str(csv_path), "--audio-dir", audio]
    base += ["--streaming", "--offline", "--clips", "2", "--gap-s", "1", "1"]
    evaluate = _streamd(*base, "--hops", "1")
    assert evaluate.returncode == 0, evaluate.stderr
    clip = sorted((esc50_root / "audio").iterdir())[0]
    replay = _streamd("replay", str(clip), "--model", "recurrent", "--hop", "1", "--speed", "max")
    assert replay.returncode == 0, replay.stderr
    said = _warnings(evaluate.stderr)
    assert len(said) == 1 and said == _warnings(replay.stderr), (evaluate.stderr, replay.stderr)
    assert "does not apply to the recurrent model" in said[0]
    quiet = _streamd(*base)
    assert quiet.returncode == 0 and not _warnings(quiet.stderr), quiet.stderr


def test_a_config_with_only_data_scores_the_model_given(
    trained_checkpoint: Path, esc50_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config`` with only a ``[data]`` table failed with ``model.arch: must be one of ...``: evaluate
    reads only a config's data (the model is --checkpoint's); without val_folds it scores every fold."""
    csv_path = write_esc50_subset(tmp_path, ("dog", "rooster", "rain"), 1, (3, 4))
    data = f'[data]\nreader = "esc50"\ncsv_path = "{csv_path}"\naudio_dir = "{esc50_root / "audio"}"\n'
    base = ["evaluate", "--checkpoint", str(trained_checkpoint), "--json"]
    for name, extra, examples in (("all.toml", "", 6), ("val.toml", "val_folds = [4]\n", 3)):
        (tmp_path / name).write_text(data + extra)
        assert main([*base, "--config", str(tmp_path / name)]) == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["num_examples"] == examples


def test_a_config_without_a_reader_lists_every_reader(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty.toml").write_text("[data]\n")
    assert main(["evaluate", "--model", "recurrent", "--config", str(tmp_path / "empty.toml")]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith(f"data.reader: required: {', '.join(READERS)}") and "own" in err
