"""One rule per stage across commands: a short file scores the same through classify, replay and
evaluate (padded with silence to one window); one hop rule; replay uses the checkpoint's own window."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.checkpoints import small_resnet_checkpoint
from support.fixtures import free_tcp_port

from models.checkpoint import load_checkpoint, save_checkpoint
from streamd.cli import main
from streamd.collect import replay_collect
from training.clips import Clip, ClipSet
from training.evaluate import clip_scores

SR = 16000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, esc50) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "five_s.safetensors"
    return small_resnet_checkpoint(path, esc50.labels, seed=3, head_gain=40.0)


def _classify(path: Path, checkpoint: Path, labels: list[str], capsys) -> np.ndarray:
    argv = ["classify", str(path), "--checkpoint", str(checkpoint), "--json", "--top-k", "50"]
    code = main([*argv, "--precision", "fp32"])  # replay_collect and evaluate score in fp32
    out = capsys.readouterr()
    assert code == 0, out.err
    scores = {item["label"]: item["score"] for item in json.loads(out.out)["labels"]}
    return np.array([scores[label] for label in labels])


def _replay(path: Path, checkpoint: Path, labels: list[str]) -> np.ndarray:
    messages = replay_collect([path], checkpoint, top_k=len(labels))
    predictions = [m for m in messages if m["type"] == "prediction"]
    assert len(predictions) == 1  # one window, padded with silence
    scores = {item["label"]: item["score"] for item in predictions[0]["labels"]}
    return np.array([scores[label] for label in labels])


def _evaluate(path: Path, checkpoint: Path) -> np.ndarray:
    model, info = load_checkpoint(checkpoint)
    clip_set = ClipSet([Clip(path, (0,))], list(info.labels))
    return clip_scores(model, info, clip_set, cache_dir=None)[0]


@pytest.mark.parametrize(("start_s", "seconds"), [(0.0, 0.3), (0.0, 1.0), (0.0, 4.99), (2.0, 1.0)])
def test_a_short_file_scores_the_same_through_classify_replay_and_evaluate(
    checkpoint: Path, esc50, tmp_path: Path, capsys, start_s: float, seconds: float
) -> None:
    wave = esc50.read_mono(esc50.clips(2)[1])[round(start_s * SR) : round((start_s + seconds) * SR)]
    path = tmp_path / "short.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    labels = esc50.labels
    classified = _classify(path, checkpoint, labels, capsys)
    replayed = _replay(path, checkpoint, labels)
    evaluated = _evaluate(path, checkpoint)
    assert classified.max() > 1.5 * np.median(classified)  # far from uniform: the comparison means something
    np.testing.assert_allclose(replayed, classified, atol=1e-5)
    np.testing.assert_allclose(evaluated, classified, atol=1e-5)


def test_one_hop_rule_across_commands(checkpoint: Path, esc50, capsys) -> None:
    clip = str(esc50.clips(1)[0])
    ckpt = ["--checkpoint", str(checkpoint)]
    port = free_tcp_port()
    runs = {
        "classify": ["classify", clip, *ckpt, "--hop-s", "0.015"],
        "replay": [
            "replay",
            clip,
            *ckpt,
            "--hop",
            "0.015",
            "--no-dashboard",
            "--publish",
            f"tcp://127.0.0.1:{port}",
        ],
        "evaluate": [
            "evaluate",
            "--folders",
            str(Path(clip).parent),
            *ckpt,
            "--streaming",
            "--hops",
            "0.015",
        ],
    }
    errors = {}
    for name, argv in runs.items():
        code = main(argv)
        errors[name] = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2, name
    assert len(set(errors.values())) == 1, errors
    assert "hop_s must be a multiple of the frame shift (10 ms), got 0.015" in errors["classify"]
    assert main(["classify", clip, *ckpt, "--hop-s", "0.02"]) == 0  # whole frame shifts are accepted


def test_replay_uses_the_checkpoints_own_window_by_default(tmp_path: Path, esc50, capsys) -> None:
    one_s = small_resnet_checkpoint(tmp_path / "one_s.safetensors", esc50.labels, seed=1, target_frames=98)
    clip = esc50.clips(1)[0]  # 5 s
    predictions = [m for m in replay_collect([clip], one_s, hop_s=1.0) if m["type"] == "prediction"]
    assert [(p["t_start"], p["t_end"]) for p in predictions] == [(float(k), k + 1.0) for k in range(5)]
    port = free_tcp_port()
    argv = ["replay", str(clip), "--checkpoint", str(one_s), "--speed", "max", "--no-dashboard"]
    code = main([*argv, "--publish", f"tcp://127.0.0.1:{port}", "--window", "2"])
    err = capsys.readouterr().err
    assert code == 0 and "warning: window 2 s differs from the 1 s the model one_s was trained on" in err


def test_a_hop_longer_than_the_window_is_warned_about_by_every_command(
    tmp_path: Path, checkpoint: Path, esc50, capsys
) -> None:
    """Audio between windows is never classified: each command says how much, in the same words."""
    clip = str(esc50.clips(1)[0])
    ckpt = ["--checkpoint", str(checkpoint)]
    publish = ["--publish", f"tcp://127.0.0.1:{free_tcp_port()}"]
    out = ["--out", str(tmp_path / "w.csv")]
    argvs = {
        "replay": ["replay", clip, *ckpt, "--hop", "8", "--speed", "max", "--no-dashboard", *publish],
        "classify": ["classify", clip, *ckpt, "--hop-s", "8"],
        "classify --windows": ["classify", "--windows", "--no-progress", *out, *ckpt, "--hop-s", "8", clip],
    }
    want = "warning: hop 8 s is longer than the window 5 s: 3 s of every hop is not classified"
    for name, argv in argvs.items():
        assert main(argv) == 0, name
        assert want in capsys.readouterr().err, name
    assert main(["classify", clip, *ckpt, "--hop-s", "5"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_window_the_model_cannot_take_is_one_line_at_start_up(
    tmp_path: Path, checkpoint: Path, esc50, capsys
) -> None:
    """Too short for the network (0.1 s: 8 frames): refused before any audio, in the same words, instead
    of a model error per window (replay) or an internal error (classify --windows)."""
    clip = str(esc50.clips(1)[0])
    ckpt = ["--checkpoint", str(checkpoint)]
    publish = ["--publish", f"tcp://127.0.0.1:{free_tcp_port()}"]
    out = ["--out", str(tmp_path / "w.csv")]
    argvs = [
        ["replay", clip, *ckpt, "--window", "0.1", "--speed", "max", "--no-dashboard", *publish],
        ["classify", "--windows", "--no-progress", *out, *ckpt, "--window-s", "0.1", clip],
    ]
    for argv in argvs:
        assert main(argv) == 2, argv[0]
        err = capsys.readouterr().err
        assert "cannot take windows of 0.1 s (8 frames)" in err and err.count("\n") == 1, err
    assert not (tmp_path / "w.csv").exists()


def test_tied_scores_are_ranked_alike_by_classify_and_replay(
    checkpoint: Path, esc50, tmp_path: Path, capsys
) -> None:
    """Replay ranked a window's labels with ``torch.topk`` (ties in no set order), classify with a stable
    sort (lower index first): equal scores came out in other orders. Every label here ties with four
    others (the head's rows copied), and both commands rank them lower index first."""
    import torch

    model, info = load_checkpoint(checkpoint)
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        for i in range(head.out_features):
            head.weight[i] = head.weight[i - i % 5]
            head.bias[i] = head.bias[i - i % 5]
    tied = save_checkpoint(tmp_path / "tied.safetensors", model, info)
    path = tmp_path / "clip.wav"
    sf.write(path, esc50.read_mono(esc50.clips(1)[0]), SR, subtype="FLOAT")
    argv = [
        "classify",
        str(path),
        "--checkpoint",
        str(tied),
        "--json",
        "--top-k",
        "50",
        "--precision",
        "fp32",
    ]
    assert main(argv) == 0
    classified = [item["label"] for item in json.loads(capsys.readouterr().out)["labels"]]
    (window,) = [m for m in replay_collect([path], tied, top_k=50) if m["type"] == "prediction"]
    replayed = [item["label"] for item in window["labels"]]
    index = {label: i for i, label in enumerate(info.labels)}
    scores = [item["score"] for item in window["labels"]]
    assert sum(a == b for a, b in itertools.pairwise(scores)) >= 30  # ten groups of five, most equal
    assert replayed == classified
    for k in range(len(replayed) - 1):
        higher = scores[k] > scores[k + 1]
        assert higher or (scores[k] == scores[k + 1] and index[replayed[k]] < index[replayed[k + 1]])
