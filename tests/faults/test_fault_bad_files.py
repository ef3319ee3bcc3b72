"""Bad, odd and valid files through ``streamd replay`` and ``streamd classify`` (see support.bad_files).

A bad file gives one clear ``streamd: error:`` line naming the file and a non-zero exit, never a
traceback; an odd but valid one (any depth, rate from 8 to 96 kHz, 1 to 8 channels, other containers,
shorter than a window) plays through the whole pipeline, and where it holds the same signal as the
original it gets the same scores. ``classify`` over all of them reports each bad one and still
classifies the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.bad_files import BY_NAME, CATALOGUE, CatalogueEntry, unprivileged_prefix
from support.process import assert_clean_error, run_streamd

from streamd.cli import main

BAD = [e.name for e in CATALOGUE if not e.works and not e.unprivileged]
GOOD = [e.name for e in CATALOGUE if e.works]
SCORE_TOLERANCE = 1e-4  # same signal (24-bit rounding at most): same scores


def replay(
    capsys: pytest.CaptureFixture[str], path: Path, checkpoint: Path
) -> tuple[int, list[dict], list[str]]:
    """``streamd replay --speed max`` in this process: (exit code, published messages, stderr lines)."""
    args = ["replay", str(path), "--speed", "max", "--checkpoint", str(checkpoint), "--top-k", "50"]
    args += ["--publish", f"inproc://fault-{path.name}", "--no-dashboard", "--json"]
    code = main(args)
    out, err = capsys.readouterr()
    published = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return code, published, [line for line in err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def reference(catalogue: Path, known_clip: Path, checkpoint: Path) -> list[dict]:
    """The original recording's predictions (through the same pipeline)."""
    capsys_free = pytest.MonkeyPatch()
    try:
        import io
        import sys

        out = io.StringIO()
        capsys_free.setattr(sys, "stdout", out)
        args = ["replay", str(known_clip), "--speed", "max", "--checkpoint", str(checkpoint), "--top-k", "50"]
        code = main([*args, "--publish", "inproc://fault-reference", "--no-dashboard", "--json"])
    finally:
        capsys_free.undo()
    assert code == 0
    messages = [json.loads(line) for line in out.getvalue().splitlines()]
    return [m for m in messages if m["type"] == "prediction"]


def _scores(prediction: dict) -> dict[str, float]:
    return {item["label"]: item["score"] for item in prediction["labels"]}


@pytest.mark.parametrize("name", BAD)
def test_replay_refuses_a_bad_file_with_one_clear_line(
    name: str, catalogue: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = BY_NAME[name]
    path = entry.path(catalogue)
    code, published, errors = replay(capsys, path, checkpoint)
    assert code != 0
    assert len(errors) == 1, errors
    assert errors[0].startswith("streamd: error: ") and str(path) in errors[0]
    assert entry.message in errors[0].lower()
    statuses = [m for m in published if m["type"] == "status"]
    if statuses:  # it failed while reading: the stream's last word says so
        assert statuses[-1]["state"] == "device_error" and entry.message in statuses[-1]["message"].lower()


@pytest.mark.parametrize("name", GOOD)
def test_replay_plays_an_odd_but_valid_file(
    name: str, catalogue: Path, checkpoint: Path, reference: list[dict], capsys: pytest.CaptureFixture[str]
) -> None:
    entry: CatalogueEntry = BY_NAME[name]
    code, published, errors = replay(capsys, entry.path(catalogue), checkpoint)
    assert code == 0 and errors == []
    statuses = [m for m in published if m["type"] == "status"]
    predictions = [m for m in published if m["type"] == "prediction"]
    assert statuses[-1]["state"] == "finished"
    assert statuses[-1]["counters"]["windows"] == len(predictions) >= 1
    notes = " ".join(s.get("message") or "" for s in statuses[1:])
    if entry.message:
        assert entry.message in notes
    else:
        assert "padded" not in notes
    if name.startswith(("depth_", "rate_", "channels_")) or name.endswith((".flac", ".ogg", ".aiff")):
        assert [p["t_end"] for p in predictions] == [p["t_end"] for p in reference]
    if entry.same_audio:
        for got, want in zip(predictions, reference, strict=True):
            got_scores, want_scores = _scores(got), _scores(want)
            assert got_scores.keys() == want_scores.keys()
            worst = max(abs(got_scores[k] - want_scores[k]) for k in want_scores)
            assert worst < SCORE_TOLERANCE, worst
            assert abs(got["level_dbfs"] - want["level_dbfs"]) < 0.01


def test_classify_reports_each_bad_file_and_classifies_the_rest(catalogue: Path, checkpoint: Path) -> None:
    entries = [e for e in CATALOGUE if not e.unprivileged]
    paths = [str(e.path(catalogue)) for e in entries]
    result = run_streamd("classify", *paths, "--checkpoint", checkpoint, "--json", timeout=120)
    assert result.returncode == 1, result.describe()
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr_lines if line.startswith("streamd: error: ")]
    bad = [e for e in entries if not e.works]
    assert len(errors) == len(bad), result.describe()
    for entry, line in zip(bad, errors, strict=True):
        assert str(entry.path(catalogue)) in line, (entry.name, line)
    assert result.stderr_lines[-1] == f"streamd: {len(bad)} of {len(entries)} file(s) could not be classified"
    classified = result.json_lines()
    assert [c["file"] for c in classified] == [str(e.path(catalogue)) for e in entries if e.works]
    assert all(len(c["labels"]) == 5 for c in classified)


def test_classify_says_when_it_pads_a_clip_shorter_than_a_window(catalogue: Path, checkpoint: Path) -> None:
    short = BY_NAME["shorter_than_window.wav"].path(catalogue)
    result = run_streamd("classify", short, "--checkpoint", checkpoint, timeout=60)
    assert result.returncode == 0, result.describe()
    assert "padded" in (result.stdout + result.stderr).lower(), result.describe()


@pytest.mark.parametrize("command", ["replay", "classify"])
def test_permission_denied_is_one_clear_line(command: str, catalogue: Path, checkpoint: Path) -> None:
    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("running as root without user namespaces: file permissions cannot be enforced")
    path = BY_NAME["permission_denied.wav"].path(catalogue)
    args = [command, path, "--checkpoint", checkpoint]
    if command == "replay":
        args += ["--speed", "max", "--publish", "inproc://denied", "--no-dashboard"]
    result = run_streamd(*args, prefix=prefix, timeout=60)
    assert_clean_error(result, str(path), "permission denied")
    if command == "classify":
        assert result.returncode == 1
