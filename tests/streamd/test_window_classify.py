"""``streamd classify --windows``: the daemon's windows and scores, written as CSV, JSON lines and Raven
selection tables (parsed back), resumable, a corrupt file reported while the rest are written, and Ray
never imported without ``--ray``."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.checkpoints import small_resnet_checkpoint
from support.process import streamd_command, streamd_env

from streamd.cli import main
from streamd.collect import replay_collect
from streamd.model_loading import load_model
from streamd.window_formats import RAVEN_HEADER, RAVEN_VIEW, raven_table_name, read_raven_table
from streamd.window_output import progress_path

SR = 16000
WINDOW_S, HOP_S = 5.0, 2.5
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, esc50) -> list[Path]:
    """A 12.3-s file of three real clips (so a tail window), two real clips, a file shorter than a window."""
    folder = tmp_path_factory.mktemp("archive")
    clips = esc50.clips(4)
    long_wave = np.concatenate([esc50.read_mono(p) for p in clips[:3]])[: round(12.3 * SR)]
    sf.write(folder / "long.wav", long_wave, SR, subtype="FLOAT")
    sf.write(folder / "short.wav", esc50.read_mono(clips[3])[: round(1.7 * SR)], SR, subtype="FLOAT")
    return [folder / "long.wav", clips[0], clips[3], folder / "short.wav"]


def windows_args(out: Path, checkpoint: Path) -> list[str]:
    """``classify --windows`` into ``out`` with ``checkpoint``, no window settings given."""
    return ["classify", "--windows", "--out", str(out), "--checkpoint", str(checkpoint), "--no-progress"]


def classify(out: Path, paths: list[Path], checkpoint: Path, *extra: str) -> int:
    args = windows_args(out, checkpoint)
    args += ["--window-s", str(WINDOW_S), "--hop-s", str(HOP_S), *extra, *map(str, paths)]
    return main(args)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_windows_and_scores_are_the_daemons(tmp_path, archive, small_checkpoint, esc50):
    out = tmp_path / "w.jsonl"
    k = len(esc50.labels)
    assert classify(out, archive, small_checkpoint, "--format", "jsonl", "--top-k", str(k)) == 0
    rows = jsonl(out)
    loaded = load_model(small_checkpoint, compute="cpu")
    for path in archive:
        mine = [r for r in rows if r["file"] == str(path)]
        daemon = [
            m for m in replay_collect([path], loaded, WINDOW_S, HOP_S, top_k=k) if m["type"] == "prediction"
        ]
        assert [(r["t_start"], r["t_end"]) for r in mine] == [(m["t_start"], m["t_end"]) for m in daemon]
        for r, m in zip(mine, daemon, strict=True):
            theirs = {item["label"]: item["score"] for item in m["labels"]}
            assert len(r["labels"]) == k
            assert max(abs(item["score"] - theirs[item["label"]]) for item in r["labels"]) <= TOLERANCE
    spans = [(r["t_start"], r["t_end"]) for r in rows if r["file"] == str(archive[0])]
    assert spans == [(0.0, 5.0), (2.5, 7.5), (5.0, 10.0), (7.3, 12.3)]  # the tail window ends with the file
    assert [(r["t_start"], r["t_end"]) for r in rows if r["file"] == str(archive[3])] == [(0.0, 5.0)]


def test_an_out_named_as_json_lines_gets_json_lines_unless_a_format_is_given(
    tmp_path, archive, small_checkpoint
):
    """``--out x.jsonl`` without ``--format`` wrote CSV into it without a word."""
    for name in ("w.jsonl", "w.ndjson", "w.JSON"):
        assert classify(tmp_path / name, archive[:1], small_checkpoint) == 0
        assert jsonl(tmp_path / name)[0]["window"] == 0
    assert classify(tmp_path / "w.txt", archive[:1], small_checkpoint) == 0  # any other name: CSV
    assert classify(tmp_path / "c.jsonl", archive[:1], small_checkpoint, "--format", "csv") == 0
    for name in ("w.txt", "c.jsonl"):
        assert (tmp_path / name).read_text().splitlines()[0] == "file,window,begin_s,end_s,rank,label,score"
    # an output begun in CSV under a .jsonl name (an older streamd's default) is resumed in CSV
    assert classify(tmp_path / "c.jsonl", archive[:2], small_checkpoint) == 0
    rows = (tmp_path / "c.jsonl").read_text().splitlines()
    assert rows[0].startswith("file,") and {r.split(",")[0] for r in rows[1:]} == {
        str(p) for p in archive[:2]
    }


def test_raven_tables_parse_back(tmp_path, archive, small_checkpoint):
    tables = tmp_path / "raven"
    assert classify(tables, archive, small_checkpoint, "--format", "raven", "--top-k", "3") == 0
    reference = tmp_path / "ref.jsonl"
    assert classify(reference, archive, small_checkpoint, "--format", "jsonl", "--top-k", "3") == 0
    rows = jsonl(reference)
    for path in archive:
        seconds = sf.info(str(path)).duration  # a selection ends within its file (short.wav: 1.7 s)
        table = tables / raven_table_name(path)
        assert table.read_text().splitlines()[0].split("\t") == list(RAVEN_HEADER)
        parsed = read_raven_table(table)
        expected = [(r, item) for r in rows if r["file"] == str(path) for item in r["labels"]]
        assert len(parsed) == len(expected) == 3 * sum(r["file"] == str(path) for r in rows)
        for n, (row, (window, item)) in enumerate(zip(parsed, expected, strict=True), 1):
            assert int(row["Selection"]) == n and row["View"] == RAVEN_VIEW and row["Channel"] == "1"
            assert float(row["Begin Time (s)"]) == pytest.approx(window["t_start"], abs=1e-3)
            assert float(row["End Time (s)"]) == pytest.approx(min(window["t_end"], seconds), abs=1e-3)
            assert float(row["Low Freq (Hz)"]) == 0.0 and float(row["High Freq (Hz)"]) == 8000.0
            assert row["Label"] == item["label"] and float(row["Confidence"]) == item["score"]
    short = read_raven_table(tables / raven_table_name(archive[3]))
    assert {row["End Time (s)"] for row in short} == {"1.700"}  # not the padded window's 5.000


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_min_score_and_csv(tmp_path, archive, small_checkpoint):
    """Labels below --min-score are left out; a window left with none keeps one row, its rank, label and
    score empty (it was classified: nothing reached the threshold)."""
    everything, kept = tmp_path / "all.csv", tmp_path / "kept.csv"
    assert classify(everything, archive, small_checkpoint, "--top-k", "5") == 0
    all_rows = csv_rows(everything)
    least = float(np.median([float(r["score"]) for r in all_rows if r["rank"] == "1"]))
    assert classify(kept, archive, small_checkpoint, "--top-k", "5", "--min-score", repr(least)) == 0
    kept_rows = csv_rows(kept)
    labelled = [r for r in kept_rows if r["label"]]
    assert all(float(r["score"]) >= least for r in labelled)
    assert labelled == [r for r in all_rows if float(r["score"]) >= least]
    assert 0 < len(labelled) < len(all_rows)
    window = ("file", "window", "begin_s", "end_s")
    empty = [tuple(r[k] for k in window) for r in kept_rows if not r["label"]]
    assert all(r["rank"] == r["score"] == "" for r in kept_rows if not r["label"])
    assert empty == [
        tuple(r[k] for k in window) for r in all_rows if r["rank"] == "1" and float(r["score"]) < least
    ]
    assert empty and {tuple(r[k] for k in window) for r in kept_rows} == {
        tuple(r[k] for k in window) for r in all_rows
    }  # every window classified is in the output


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "raven"])
def test_a_file_with_nothing_above_min_score_is_told_from_one_never_classified(
    tmp_path, archive, small_checkpoint, fmt
):
    """``--min-score 1``: no label passes. CSV and JSON lines wrote nothing at all for such a file, as if
    it had never been classified; each of its windows now has a row (no label) / a line (``labels: []``),
    and a Raven directory has its table with the header alone."""
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(round(7.0 * SR), dtype=np.float32), SR)
    out = tmp_path / ("tables" if fmt == "raven" else f"o.{fmt}")
    assert classify(out, [silent, archive[1]], small_checkpoint, "--format", fmt, "--min-score", "1") == 0
    spans = [(0.0, 5.0), (2.0, 7.0)]  # the silent file's windows: one every hop, the tail aligned to its end
    if fmt == "raven":
        for path in (silent, archive[1]):
            assert (out / raven_table_name(path)).read_text().splitlines() == ["\t".join(RAVEN_HEADER)]
    elif fmt == "jsonl":
        rows = jsonl(out)
        assert [(r["t_start"], r["t_end"]) for r in rows if r["file"] == str(silent)] == spans
        assert {r["file"] for r in rows} == {str(silent), str(archive[1])}
        assert all(r["labels"] == [] for r in rows)
    else:
        rows = csv_rows(out)
        mine = [(float(r["begin_s"]), float(r["end_s"])) for r in rows if r["file"] == str(silent)]
        assert mine == spans and {r["file"] for r in rows} == {str(silent), str(archive[1])}
        assert all(r["rank"] == r["label"] == r["score"] == "" for r in rows)


def test_corrupt_file_reported_others_written_and_resumed(tmp_path, archive, small_checkpoint, capsys):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 8)
    out = tmp_path / "w.jsonl"
    paths = [archive[1], corrupt, archive[2]]
    assert classify(out, paths, small_checkpoint, "--format", "jsonl") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("streamd: error:")]
    assert len(errors) == 1 and str(corrupt) in errors[0]
    first = out.read_text()
    assert {r["file"] for r in jsonl(out)} == {str(archive[1]), str(archive[2])}
    # An interrupted run leaves half a file's rows behind: the rerun cuts them and adds what was missing.
    with out.open("a") as f:
        f.write('{"file": "half-written"')
    assert classify(out, [*paths, archive[0]], small_checkpoint, "--format", "jsonl") == 1
    err = capsys.readouterr().err
    assert "2 file(s) already done" in err
    assert out.read_text().startswith(first) and "half-written" not in out.read_text()
    assert [r["file"] for r in jsonl(out)].count(str(archive[1])) == 1
    assert str(archive[0]) in {r["file"] for r in jsonl(out)}


def test_windows_say_a_short_or_silent_file_as_clip_classify_does(tmp_path, small_checkpoint, capsys):
    """Clip-level classify said a file shorter than a window was padded and digital silence scored nothing
    of it; --windows wrote their windows unsaid."""
    short, silent, nearly = tmp_path / "short.wav", tmp_path / "silent.wav", tmp_path / "nearly.wav"
    rng = np.random.default_rng(0)
    sf.write(short, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    sf.write(silent, np.zeros(16000 * 3, np.float32), 16000)
    sf.write(nearly, (0.1 * rng.standard_normal(79_990)).astype(np.float32), 16000)  # all of the frames
    files = [short, silent, nearly]
    assert main(["classify", *map(str, files), "--checkpoint", str(small_checkpoint)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("streamd: ")]
    assert len(said) == 3 and "padded with silence to one" in said[0] and "digital silence" in said[2]
    out = tmp_path / "w.jsonl"
    assert classify(out, files, small_checkpoint, "--format", "jsonl") == 0
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith(("streamd: note: ", "streamd: warning: "))] == said
    marked = {r["file"] for r in jsonl(out) if r.get("digital_silence") is True}
    assert marked == {str(silent)}  # as clip-level classify --json marks it


def test_resume_refuses_other_settings(tmp_path, archive, small_checkpoint, capsys):
    out = tmp_path / "w.csv"
    assert classify(out, archive[1:2], small_checkpoint) == 0
    assert classify(out, archive[1:2], small_checkpoint, "--top-k", "2") == 2
    err = capsys.readouterr().err  # names what differs and how to continue
    assert "other settings (top_k 5 -> 2); to continue it: --top-k 5; choose another output" in err


def test_resume_refuses_another_precision(tmp_path, archive, small_checkpoint, capsys):
    """Scores of one precision are not appended to an output written in another."""
    out = tmp_path / "w.csv"
    assert classify(out, archive[1:2], small_checkpoint, "--precision", "fp32") == 0
    assert classify(out, archive[1:3], small_checkpoint, "--precision", "int8") == 2
    assert "other settings" in capsys.readouterr().err
    assert classify(out, archive[1:3], small_checkpoint, "--precision", "fp32") == 0


def test_the_checkpoints_own_window_given_or_not_is_the_same_setting(
    tmp_path, archive, small_checkpoint, capsys
):
    """``--window-s`` equal to the checkpoint's own window (5 s) resumes an output written without it."""
    out = tmp_path / "w.csv"
    base = windows_args(out, small_checkpoint)
    assert main([*base, "--hop-s", str(HOP_S), str(archive[1])]) == 0
    capsys.readouterr()
    assert main([*base, "--hop-s", str(HOP_S), "--window-s", "5", str(archive[1]), str(archive[2])]) == 0
    assert "1 file(s) already done" in capsys.readouterr().err


def test_without_ray_nothing_imports_ray(tmp_path, archive, small_checkpoint):
    code = (
        "import sys; from streamd.cli import main\n"
        f"rc = main(['classify', '--windows', '--no-progress', '--out', {str(tmp_path / 'o.csv')!r},"
        f" '--checkpoint', {str(small_checkpoint)!r}, {str(archive[1])!r}])\n"
        "assert rc == 0, rc\n"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=streamd_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_window_options_need_windows(tmp_path, archive, small_checkpoint, capsys):
    args = ["classify", "--checkpoint", str(small_checkpoint), str(archive[1])]
    assert main([*args, "--ray"]) == 2
    assert main([*args, "--out", str(tmp_path / "o.csv")]) == 2
    assert main([*args, "--windows"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("streamd: error:")]
    assert len(errors) == 3 and "--ray needs --windows" in errors[0] and "--windows needs --out" in errors[2]
    assert not (tmp_path / "o.csv").exists()
    assert main([*args, "--windows", "--out", "-"]) == 2  # not a file named "-"
    assert "not -)" in capsys.readouterr().err and not pathlib.Path("-").exists()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_output_deleted_or_cut_short_starts_over(tmp_path, archive, small_checkpoint, capsys, fmt):
    """A progress list whose output is gone (deleted, or shorter than it records) is stale: the rerun
    starts over, with any settings, and writes a whole, proper output."""
    out, reference = tmp_path / f"w.{fmt}", tmp_path / f"ref.{fmt}"
    paths = archive[1:3]
    assert classify(reference, paths, small_checkpoint, "--format", fmt, "--top-k", "2") == 0
    assert classify(out, paths, small_checkpoint, "--format", fmt) == 0
    out.unlink()
    capsys.readouterr()
    assert classify(out, paths, small_checkpoint, "--format", fmt, "--top-k", "2") == 0  # other settings
    err = capsys.readouterr().err
    assert "its progress list records: starting over" in err and "already done" not in err
    assert out.read_bytes() == reference.read_bytes()
    out.write_bytes(out.read_bytes()[:30])  # cut short (an interrupted copy, a full disk)
    assert classify(out, paths, small_checkpoint, "--format", fmt, "--top-k", "2") == 0
    assert "starting over" in capsys.readouterr().err
    assert out.read_bytes() == reference.read_bytes()


def test_a_long_file_name_gets_a_shortened_raven_table_and_the_batch_goes_on(
    tmp_path, archive, small_checkpoint
):
    """A 250-character input name made its table's name (suffix and ``.part`` added) too long for the
    file system: the batch stopped there, the files after it never classified. The name is now shortened
    and tagged with a hash of the whole stem, so two such names that share their start get two tables."""
    long_names = [tmp_path / ("x" * 240 + tail + ".wav") for tail in ("a", "b")]
    for path, source in zip(long_names, archive, strict=False):
        path.write_bytes(source.read_bytes())
    tables = tmp_path / "raven"
    files = [*long_names, archive[2]]
    assert classify(tables, files, small_checkpoint, "--format", "raven") == 0
    names = [raven_table_name(path) for path in files]
    assert len(set(names)) == 3 and all(len(os.fsencode(n + ".part")) <= 255 for n in names)
    assert names[2] == archive[2].stem + ".streamd.selection.table.txt"  # a usual name is kept as it is
    assert sorted(p.name for p in tables.glob("*.txt")) == sorted(names)


def test_a_deleted_raven_table_is_written_again(tmp_path, archive, small_checkpoint, capsys):
    tables = tmp_path / "raven"
    assert classify(tables, archive[1:3], small_checkpoint, "--format", "raven") == 0
    gone, kept = (tables / raven_table_name(path) for path in archive[1:3])
    text, kept_written = gone.read_text(), kept.stat().st_mtime_ns
    gone.unlink()
    capsys.readouterr()
    assert classify(tables, archive[1:3], small_checkpoint, "--format", "raven") == 0
    err = capsys.readouterr().err
    assert "1 recorded table(s) missing" in err and "1 file(s) already done" in err
    assert gone.read_text() == text and kept.stat().st_mtime_ns == kept_written


def test_a_progress_line_cut_short_is_classified_again_and_a_corrupt_list_is_one_line(
    tmp_path, archive, small_checkpoint, capsys
):
    out, reference = tmp_path / "w.csv", tmp_path / "ref.csv"
    paths = archive[1:3]
    assert classify(reference, paths, small_checkpoint) == 0
    assert classify(out, paths, small_checkpoint) == 0
    progress = progress_path(out, "csv")
    lines = progress.read_text().splitlines()
    progress.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:12])  # died while recording file 2
    capsys.readouterr()
    assert classify(out, paths, small_checkpoint) == 0
    assert "1 file(s) already done" in capsys.readouterr().err
    assert out.read_bytes() == reference.read_bytes()  # file 2's rows once, not twice
    assert classify(out, [*paths, archive[3]], small_checkpoint) == 0  # later records stay readable
    assert "2 file(s) already done" in capsys.readouterr().err
    assert classify(out, [*paths, archive[3]], small_checkpoint) == 0
    assert "3 file(s) already done" in capsys.readouterr().err
    progress.write_text(lines[0][:10])  # died while writing the settings: nothing recorded, start over
    assert classify(out, paths, small_checkpoint) == 0
    assert "already done" not in capsys.readouterr().err and out.read_bytes() == reference.read_bytes()
    progress.write_text("{not json\n" + "\n".join(lines[1:]) + "\n")  # the settings line itself is broken
    assert classify(out, paths, small_checkpoint) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 1 is not a progress entry" in err and "Traceback" not in err


def test_another_model_written_over_the_same_checkpoint_is_refused(tmp_path, archive, esc50, capsys):
    """The output remembers the checkpoint's content, not only its path: retrained weights copied over
    it do not mix into an output begun with the old ones."""
    checkpoint = small_resnet_checkpoint(tmp_path / "m.safetensors", esc50.labels, seed=1)
    out = tmp_path / "w.csv"
    assert classify(out, archive[1:2], checkpoint) == 0
    small_resnet_checkpoint(checkpoint, esc50.labels, seed=2)  # the same path, other weights
    capsys.readouterr()
    assert classify(out, archive[1:3], checkpoint) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and err.count("\n") == 1


@pytest.mark.parametrize("fmt", ["csv", "raven"])
def test_audio_changed_since_it_was_classified(tmp_path, archive, small_checkpoint, capsys, fmt):
    """Raven: the changed file is classified again (its table replaced); CSV: its rows stay and the rerun
    says they are of the earlier audio."""
    audio = tmp_path / "a.wav"
    sf.write(audio, sf.read(archive[1])[0], SR, subtype="FLOAT")
    out = tmp_path / ("raven" if fmt == "raven" else "w.csv")
    assert classify(out, [audio, archive[2]], small_checkpoint, "--format", fmt) == 0
    before = out.read_bytes() if fmt == "csv" else (out / raven_table_name(audio)).read_text()
    sf.write(audio, sf.read(archive[2])[0], SR, subtype="FLOAT")  # other audio, same name
    capsys.readouterr()
    assert classify(out, [audio, archive[2]], small_checkpoint, "--format", fmt) == 0
    err = capsys.readouterr().err
    if fmt == "raven":
        assert "1 file(s) changed since they were classified: classified again" in err
        assert (out / raven_table_name(audio)).read_text() != before
        assert "1 file(s) already done" in err
    else:
        assert "their rows there are of the earlier audio" in err and out.read_bytes() == before


def test_standard_input_gives_the_rows_of_the_file(tmp_path, archive, small_checkpoint):
    """The progress bar's sizing does not read standard input (it can be read only once). A second
    standard input into the same output was appended under the same name ``<stdin>``, its windows
    numbered from 0 again: rows of two recordings no one could tell apart. It is refused in one line."""
    wav = tmp_path / "clip.wav"
    sf.write(wav, sf.read(archive[1])[0], SR, subtype="PCM_16")
    from_file, from_pipe = tmp_path / "f.jsonl", tmp_path / "p.jsonl"
    assert classify(from_file, [wav], small_checkpoint, "--format", "jsonl") == 0
    command = [sys.executable, "-m", "streamd", "classify", "--windows", "--out", str(from_pipe)]
    command += ["--checkpoint", str(small_checkpoint), "--window-s", str(WINDOW_S), "--hop-s", str(HOP_S)]
    command += ["--format", "jsonl", "-"]  # the progress bar on: it must not probe "-"
    done = subprocess.run(command, input=wav.read_bytes(), env=streamd_env(), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    windows = [{k: v for k, v in row.items() if k != "file"} for row in jsonl(from_pipe)]
    assert windows == [{k: v for k, v in row.items() if k != "file"} for row in jsonl(from_file)]
    assert windows and {row["file"] for row in jsonl(from_pipe)} == {"<stdin>"}  # as classify names it
    before = from_pipe.read_bytes()
    again = subprocess.run(command, input=wav.read_bytes(), env=streamd_env(), capture_output=True)
    err = again.stderr.decode()
    assert again.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert (
        err.startswith("streamd: error: ")
        and "already holds the rows of an earlier run's standard input" in err
    )
    assert from_pipe.read_bytes() == before


def test_a_file_named_twice_is_classified_once(tmp_path, archive, small_checkpoint):
    once, twice = tmp_path / "once.csv", tmp_path / "twice.csv"
    assert classify(once, archive[1:2], small_checkpoint) == 0
    assert classify(twice, [archive[1], archive[1]], small_checkpoint) == 0
    assert twice.read_bytes() == once.read_bytes()


def test_a_progress_list_of_an_earlier_streamd_is_resumed(tmp_path, archive, small_checkpoint, capsys):
    """Lists written before the checkpoint's digest was recorded resume (with a note), not refused."""
    out = tmp_path / "w.csv"
    assert classify(out, archive[1:2], small_checkpoint) == 0
    progress = progress_path(out, "csv")
    lines = progress.read_text().splitlines()
    head = json.loads(lines[0])
    del head["settings"]["model_sha256"], head["settings"]["precision"], head["settings"]["own_window_s"]
    head["settings"]["window_s"] = WINDOW_S  # the window given, which it recorded as it was given
    entries = [{k: v for k, v in json.loads(line).items() if k != "path"} for line in lines[1:]]  # by name
    progress.write_text("\n".join(map(json.dumps, [head, *entries])) + "\n")
    capsys.readouterr()
    assert classify(out, archive[1:3], small_checkpoint) == 0
    err = capsys.readouterr().err
    assert "1 file(s) already done" in err
    assert "begun by an earlier streamd: its checkpoint's content and precision not checked" in err


@pytest.mark.parametrize("fmt", ["csv", "raven"])
def test_a_disk_that_fills_mid_run_is_one_line_and_the_rerun_completes(
    tmp_path, archive, small_checkpoint, capsys, fmt
):
    from support.tiny_disk import tiny_tmpfs

    paths = archive * 6  # copies of the files: files of their own (the output outgrows the disk)
    copies = []
    for i, path in enumerate(paths):
        copies.append(tmp_path / f"c{i}{path.suffix}")
        shutil.copyfile(path, copies[-1])
    with tiny_tmpfs(tmp_path / "small", size="512k") as disk:
        out = disk / ("o.csv" if fmt == "csv" else "tables")
        (disk / "ballast").write_bytes(bytes(500 * 1024))  # about 12 KB left
        assert classify(out, copies, small_checkpoint, "--format", fmt) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and "internal error" not in err
        assert [line for line in err.splitlines() if "No space left on device" in line] == [
            next(line for line in err.splitlines() if line.startswith("streamd: error: "))
        ]
        assert not list(disk.rglob("*.part"))  # no half-written Raven table left
        (disk / "ballast").unlink()  # space again: the rerun goes on from what was done
        assert classify(out, copies, small_checkpoint, "--format", fmt) == 0, capsys.readouterr().err
        whole = tmp_path / ("whole.csv" if fmt == "csv" else "whole")
        assert classify(whole, copies, small_checkpoint, "--format", fmt) == 0
        if fmt == "csv":
            assert out.read_text() == whole.read_text()
        else:
            assert {p.name: p.read_text() for p in out.glob("*.txt")} == {
                p.name: p.read_text() for p in whole.glob("*.txt")
            }
    capsys.readouterr()


def test_a_file_of_the_same_name_in_another_folder_is_refused_across_runs(
    tmp_path, archive, small_checkpoint, capsys
):
    """Refused within one run, it replaced the earlier run's Raven table while the progress list kept the
    first file as done: its results were lost for good."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.flac").symlink_to(archive[1] if folder == "a" else archive[2])
    out = tmp_path / "tables"
    assert classify(out, [tmp_path / "a" / "x.flac"], small_checkpoint, "--format", "raven") == 0
    first = (out / raven_table_name("x.flac")).read_text()
    assert classify(out, [tmp_path / "b" / "x.flac"], small_checkpoint, "--format", "raven") == 2
    assert "would replace the Raven table of" in capsys.readouterr().err
    assert (out / raven_table_name("x.flac")).read_text() == first
    same = tmp_path / "a" / ".." / "a" / "x.flac"  # the finished file itself, named another way: not a clash
    assert classify(out, [same], small_checkpoint, "--format", "raven") == 0


def test_names_that_are_not_utf8_are_written_escaped_in_every_format(tmp_path, archive, small_checkpoint):
    """CSV output stopped with an internal error (the files after it never classified); JSON lines held
    a lone surrogate. Outputs name the file as every command does: undecodable bytes as \\xNN."""
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/\xff.flac"))
    odd.symlink_to(archive[1])
    assert classify(tmp_path / "o.csv", [odd, archive[2]], small_checkpoint) == 0
    with (tmp_path / "o.csv").open() as f:
        names = {row["file"] for row in csv.DictReader(f)}
    assert f"{tmp_path}/\\xff.flac" in names and str(archive[2]) in names
    assert classify(tmp_path / "o.jsonl", [odd], small_checkpoint, "--format", "jsonl") == 0
    (tmp_path / "o.jsonl").read_text(encoding="utf-8")  # strict: no lone surrogate
    assert classify(tmp_path / "o.csv", [odd, archive[2]], small_checkpoint) == 0  # resumed: both done


def test_a_second_run_into_the_same_output_at_once_is_refused(tmp_path, archive, small_checkpoint, capsys):
    """Two runs at once (a run started twice, a leftover one) wrote every file's rows twice."""
    from streamd.window_output import WindowOutput

    out = tmp_path / "o.csv"
    held = WindowOutput(out, "csv", {"x": 1}, 8000.0)  # another run holding the output
    try:
        assert classify(out, archive[1:2], small_checkpoint) == 2
        assert "is being written by another streamd run" in capsys.readouterr().err
    finally:
        held.close()
    # a progress list whose last line was cut short is rewritten (renamed over) on opening: still locked
    assert classify(out, archive[1:2], small_checkpoint) == 0
    progress = progress_path(out, "csv")
    progress.write_text(progress.read_text() + '{"file": "cut sh')
    settings = json.loads(progress.read_text().splitlines()[0])["settings"]
    held = WindowOutput(out, "csv", settings, 8000.0)
    try:
        assert classify(out, archive[1:2], small_checkpoint) == 2
    finally:
        held.close()


def test_without_a_hop_a_short_window_hops_half_of_itself(tmp_path, archive, small_checkpoint, capsys):
    """The help's default hop: 2.5 s, or half the window when that is shorter (a 2-s window: 1 s), so that
    no part of a file goes unclassified (2.5 s had warned that 0.5 s of every hop was skipped)."""
    out = tmp_path / "w.jsonl"
    args = windows_args(out, small_checkpoint)
    assert main([*args, "--format", "jsonl", "--window-s", "2", str(archive[0])]) == 0
    spans = [(r["t_start"], r["t_end"]) for r in jsonl(out)]
    assert spans[:3] == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)] and spans[-1][1] == 12.3
    assert "not classified" not in capsys.readouterr().err


def _same_length_other_audio(folder: Path, source: Path, stamp_ns: int) -> Path:
    """``folder/x.wav``: the audio of ``source`` (5 s, as every ESC-50 clip) as 16-bit WAV, so that its
    size is the same whatever the audio, modified at ``stamp_ns``."""
    folder.mkdir()
    path = folder / "x.wav"
    sf.write(path, esc50_mono(source), SR, subtype="PCM_16")
    os.utime(path, ns=(stamp_ns, stamp_ns))
    return path


def esc50_mono(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32")[0]


def test_a_file_is_known_by_where_it_is_not_by_the_name_typed(
    tmp_path, archive, small_checkpoint, capsys, monkeypatch
):
    """Resuming went by the text typed: ``x.wav`` of another folder (same name, size and time) was
    skipped as done, and the same file typed ``many/f1.flac``, ``./many/f1.flac`` or in full was
    classified again. A file is now known by its real path; rows name it by its absolute path."""
    out = tmp_path / "o.csv"
    first = _same_length_other_audio(tmp_path / "d3", archive[1], 1_700_000_000_000_000_000)
    second = _same_length_other_audio(tmp_path / "d4", archive[2], 1_700_000_000_000_000_000)
    assert first.stat().st_size == second.stat().st_size
    monkeypatch.chdir(first.parent)
    assert classify(out, [Path("x.wav")], small_checkpoint) == 0
    monkeypatch.chdir(second.parent)
    capsys.readouterr()
    assert classify(out, [Path("x.wav")], small_checkpoint) == 0
    err = capsys.readouterr().err
    assert "already done" not in err and "changed since" not in err
    rows = csv_rows(out)
    first, second = Path(os.path.realpath(first)), Path(os.path.realpath(second))  # as os.getcwd() has it
    assert [r["file"] for r in rows if r["rank"] == "1"] == [str(first), str(second)]  # one window each
    assert {r["score"] for r in rows if r["file"] == str(first)} != {
        r["score"] for r in rows if r["file"] == str(second)
    }
    (tmp_path / "many").mkdir()
    f1 = Path(os.path.realpath(tmp_path)) / "many" / "f1.flac"
    sf.write(f1, esc50_mono(archive[1]), SR, subtype="PCM_16")
    monkeypatch.chdir(tmp_path)
    assert classify(out, [Path("many/f1.flac")], small_checkpoint) == 0
    written = out.read_bytes()
    for spelling in ("./many/f1.flac", str(f1), "many/../many/f1.flac"):
        capsys.readouterr()
        assert main([*windows_args(out, small_checkpoint), "--hop-s", str(HOP_S), spelling]) == 0
        assert "1 file(s) already done" in capsys.readouterr().err
    assert out.read_bytes() == written
    once = tmp_path / "once.jsonl"  # named three ways in one run: classified once, named in full
    assert (
        main(
            [
                *windows_args(once, small_checkpoint),
                "--format",
                "jsonl",
                "many/f1.flac",
                "./many/f1.flac",
                str(f1),
            ]
        )
        == 0
    )
    assert {r["file"] for r in jsonl(once)} == {str(f1)} and len(jsonl(once)) == 1


def test_paths_naming_one_file_are_classified_once_and_said_so(
    tmp_path, archive, small_checkpoint, capsys, monkeypatch
):
    """Paths naming one file (a link to it, the same path twice, ``./x`` and ``x``) were merged unsaid:
    three paths gave "1 file(s)". A note names each later path and the one it repeats, and the summary
    counts the paths given and the distinct files; plain classify prints a line for every path given."""
    (tmp_path / "odd").mkdir()
    sf.write(tmp_path / "odd" / "clip.wav", esc50_mono(archive[1])[:SR], SR, subtype="PCM_16")
    (tmp_path / "odd" / "link.wav").symlink_to("clip.wav")
    monkeypatch.chdir(tmp_path)
    out, paths = tmp_path / "o.csv", ["odd/clip.wav", "odd/link.wav", "./odd/clip.wav", "odd/clip.wav"]
    assert main([*windows_args(out, small_checkpoint), *paths]) == 0
    err = capsys.readouterr().err.splitlines()
    notes = [line for line in err if "classified once" in line]
    assert notes == [
        "streamd: note: odd/link.wav is the same file as odd/clip.wav: classified once",
        "streamd: note: ./odd/clip.wav is the same file as odd/clip.wav: classified once",
        "streamd: note: odd/clip.wav is given again: classified once",
    ]
    summary = [line for line in err if line.startswith("streamd: 1 file(s), ")]
    assert len(summary) == 1 and summary[0].endswith(" (4 paths given, 1 distinct file(s))")
    clip = Path(os.path.realpath(tmp_path)) / "odd" / "clip.wav"
    assert {r["file"] for r in csv_rows(out)} == {str(clip)}
    assert main(["classify", "--checkpoint", str(small_checkpoint), *paths]) == 0
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == paths


def test_an_earlier_streamds_list_of_typed_names_resumes_only_where_it_can_tell_the_file(
    tmp_path, archive, small_checkpoint, capsys, monkeypatch
):
    """A progress list an earlier streamd wrote records files by the names typed: a relative name is the
    file it was only where this folder holds that very file (its size and time): it resumes there (and
    the list learns where the file is), and is refused in one line anywhere else, never skipped."""
    stamp = 1_700_000_000_000_000_000
    first = _same_length_other_audio(tmp_path / "d3", archive[1], stamp)
    second = _same_length_other_audio(tmp_path / "d4", archive[2], stamp + 1)
    first, second = Path(os.path.realpath(first)), Path(os.path.realpath(second))  # as os.getcwd() has it
    out = tmp_path / "o.csv"
    progress = progress_path(out, "csv")

    monkeypatch.chdir(first.parent)  # begun here by an earlier streamd:
    assert classify(out, [Path("x.wav")], small_checkpoint) == 0
    lines = progress.read_text().splitlines()
    entries = [{**json.loads(line), "file": "x.wav"} for line in lines[1:]]  # the name typed only
    for entry in entries:
        del entry["path"]
    progress.write_text("\n".join([lines[0], *map(json.dumps, entries)]) + "\n")
    monkeypatch.chdir(second.parent)  # another folder's x.wav: which file the list meant cannot be told
    written, listed = out.read_bytes(), progress.read_text()
    capsys.readouterr()
    assert classify(out, [Path("x.wav")], small_checkpoint) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "recorded files by the names typed: x.wav is not, in" in err
    assert out.read_bytes() == written and progress.read_text() == listed
    monkeypatch.chdir(first.parent)  # where it was begun: resumed, the list now knows where x.wav is
    assert classify(out, [Path("x.wav"), archive[2]], small_checkpoint) == 0
    assert "1 file(s) already done" in capsys.readouterr().err
    assert json.loads(progress.read_text().splitlines()[1])["path"] == str(first)
    monkeypatch.chdir(second.parent)  # and from now on from anywhere
    assert classify(out, [first, Path("x.wav")], small_checkpoint) == 0
    err = capsys.readouterr().err
    assert "1 file(s) already done" in err
    assert {r["file"] for r in csv_rows(out)} == {str(first), str(archive[2]), str(second)}


def _cut_flac(folder: Path, esc50) -> Path:
    """A 60-s FLAC of real clips with the second half of its bytes missing (a copy cut short)."""
    whole = folder / "whole.flac"
    sf.write(whole, np.concatenate([esc50.read_mono(p) for p in esc50.clips(12)]), SR)
    cut = folder / "cut.flac"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return cut


def test_a_flac_with_a_corrupt_tail_keeps_its_readable_part_as_replay_does(
    tmp_path, small_checkpoint, esc50, capsys
):
    """``replay`` classifies a file's readable part and says how much was not; ``classify --windows``
    wrote nothing for it. It now keeps the same windows and scores, says the same, exits 1, and records
    the file as done, so a rerun skips it (its rows once) and says it is there only in part."""
    from support.fixtures import free_tcp_port

    cut, out = _cut_flac(tmp_path, esc50), tmp_path / "w.jsonl"
    k = str(len(esc50.labels))
    assert classify(out, [cut], small_checkpoint, "--format", "jsonl", "--top-k", k) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("streamd: error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"streamd: error: {cut}: read error (")
    unread = float(errors[0].split("; its last ")[1].split(" s were not classified")[0])
    read = float(errors[0].split("the windows of its first ")[1].split(" s are in")[0])
    assert read + unread == pytest.approx(60.0, abs=0.01) and 10.0 < read < 50.0
    assert "it counts as done (a rerun skips it)" in errors[0] and "Traceback" not in err
    rows = jsonl(out)
    assert rows and rows[-1]["t_end"] == pytest.approx(read, abs=1e-3)  # the tail window ends where it broke
    replay = ["replay", str(cut), "--speed", "max", "--no-dashboard", "--json", "--checkpoint"]
    replay += [str(small_checkpoint), "--window", str(WINDOW_S), "--hop", str(HOP_S), "--top-k", k]
    assert main([*replay, "--publish", f"tcp://127.0.0.1:{free_tcp_port()}"]) == 1
    printed, replay_err = capsys.readouterr()
    assert f"its last {unread:.2f} s were not classified" in replay_err
    daemon = [m for m in map(json.loads, printed.splitlines()) if m["type"] == "prediction"]
    assert [(r["t_start"], r["t_end"]) for r in rows] == [(m["t_start"], m["t_end"]) for m in daemon]
    for r, m in zip(rows, daemon, strict=True):
        theirs = {item["label"]: item["score"] for item in m["labels"]}
        assert max(abs(item["score"] - theirs[item["label"]]) for item in r["labels"]) <= TOLERANCE
    written = out.read_bytes()
    assert classify(out, [cut], small_checkpoint, "--format", "jsonl", "--top-k", k) == 0
    err = capsys.readouterr().err
    assert "1 file(s) already done" in err and "1 of them only up to a read error" in err
    assert out.read_bytes() == written


def test_on_ray_a_corrupt_tail_keeps_the_readable_part_too(tmp_path, small_checkpoint, esc50):
    """The Ray path's per-file task and the driver's grouping give the local run's result (no cluster:
    the two halves are called as Ray calls them)."""
    from streamd.model_runner import ModelRunner
    from streamd.ray_classify import FileWindows, group_rows
    from streamd.window_scoring import classify_file, window_plan

    cut = _cut_flac(tmp_path, esc50)
    loaded = load_model(small_checkpoint, compute="cpu")
    plan = window_plan(loaded, WINDOW_S, HOP_S)
    local = classify_file(ModelRunner(loaded), str(cut), plan, 5, 2.0)  # min score 2: no labels to compare
    rows = [{**row, "labels": "[]"} for row in FileWindows(plan)({"path": str(cut), "name": str(cut)})]
    (on_ray,) = group_rows(iter(rows))
    assert local.partial is not None and local.error is None and local.windows
    assert on_ray == local


def test_ctrl_c_says_where_the_progress_is_kept_and_the_same_command_resumes(
    tmp_path, archive, small_checkpoint
):
    """Ctrl-C ended ``classify --windows`` with 130 and nothing said (``train`` says where its progress
    is). Interrupted while it waits for a FIFO nobody writes to, after a file was finished."""
    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    out = tmp_path / "o.csv"
    args = [*windows_args(out, small_checkpoint), "--window-s", str(WINDOW_S), "--hop-s", str(HOP_S)]
    proc = subprocess.Popen(
        streamd_command([*args, str(archive[1]), str(fifo)]), env=streamd_env(), stderr=subprocess.PIPE
    )
    progress = progress_path(out, "csv")
    deadline = time.monotonic() + 120
    while not (progress.exists() and len(progress.read_text().splitlines()) >= 2):  # the first file done
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # now waiting (up to 3 s) for the FIFO's first bytes
    assert proc.wait(timeout=60) == 130
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert err.splitlines() == [
        f"streamd: interrupted: 1 finished file(s) are kept in {out}, recorded in {progress}; run the same "
        "command again to resume (a file cut off half-way is classified again)"
    ]
    assert main([*args, str(archive[1])]) == 0  # resumed: nothing to do again
