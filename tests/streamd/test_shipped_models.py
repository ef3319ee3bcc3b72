"""Every shipped model (``audio_core.shipped_models``) is installed, small, self-describing and working.

Working means `streamd classify --model NAME` names most of 20 real ESC-50 clips of 20 classes (training
clips of the shipped models: this checks that the file and its features, normalisation and labels fit
together, not held-out accuracy, which `docs/training.md` reports). Chance is 1 in 50.
"""

from __future__ import annotations

import json

import pytest
from support.paths import clip_paths, esc50_labels

from audio_core.shipped_models import SHIPPED_MODELS, shipped_model_path
from models.checkpoint import read_info
from streamd.cli import main

MAX_BYTES = 25 * 1024 * 1024
MIN_RIGHT = 10  # of 20 training clips


def first_clip_per_class(n: int) -> dict[str, str]:
    """File -> label for the first clip of each of the first ``n`` classes of fold 1."""
    labels = esc50_labels()
    return {str(path): labels[int(path.stem.rsplit("-", 1)[1])] for path in clip_paths(n)}


@pytest.mark.parametrize("name", list(SHIPPED_MODELS))
def test_the_shipped_model_is_installed_small_and_records_its_bf16_agreement(name):
    path = shipped_model_path(name)
    assert path.exists(), f"{name}: {path.name} is not in streamd/default_models"
    assert path.stat().st_size <= MAX_BYTES
    info = read_info(path)
    assert len(info.labels) == 50 and info.normalization is not None
    assert 0.0 <= float(info.extra["bf16_agreement"]) <= 1.0


@pytest.mark.parametrize("name", list(SHIPPED_MODELS))
def test_the_shipped_model_names_real_clips(name, esc50_dir, capsys):
    clips = first_clip_per_class(20)
    assert main(["classify", *clips, "--model", name, "--json", "--top-k", "1", "--precision", "fp32"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    right = sum(a["labels"][0]["label"] == clips[a["file"]] for a in answers)
    assert len(answers) == 20 and right >= MIN_RIGHT, (name, right)


@pytest.mark.parametrize("name", list(SHIPPED_MODELS))
def test_the_shipped_model_records_the_esc50_clips_it_trained_on(name, esc50_dir):
    """By their bytes (``scripts/record_trained_clips.py``): evaluate and fine-tuning tell them under any
    name, in any CSV or folder; fold 1's clips are among them, and the count is folds 1-4's."""
    from training.trained_clips import clip_digest, recorded

    info = read_info(shipped_model_path(name))
    assert info.extra["dataset"] == "esc50" and info.extra["train_folds"] == [1, 2, 3, 4]
    digests = recorded(info.extra)
    assert digests is not None and len(digests) == 1600
    assert {clip_digest(path) for path in clip_paths(20)} <= digests
