"""``train.background`` is refused with stream training, where "nothing" is learnt on the gaps instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO
from training.loop import TrainConfig
from training.sequences import SequenceConfig


def test_background_clips_with_stream_training_are_refused() -> None:
    with pytest.raises(ValueError, match='background_steps = "no_class"'):
        TrainConfig(background=0.1, sequences=SequenceConfig(length_s=30.0))


def test_either_way_of_learning_nothing_is_accepted() -> None:
    assert TrainConfig(background=0.1).background == 0.1
    streams = SequenceConfig(length_s=30.0, background_steps="no_class")
    assert TrainConfig(sequences=streams).sequences.background_steps == "no_class"


def test_the_command_says_so_in_one_line_before_training(tmp_path: Path) -> None:
    config = REPO / "configs" / "train" / "esc50_streaming_mamba.toml"
    cmd = [sys.executable, "-m", "streamd", "train", str(config), "--set", "train.background=0.1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"streamd: error: {config}: train.background = 0.1"), lines
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()
