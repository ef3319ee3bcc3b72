"""``streamd classify`` options by the rules of replay: output to a pipe whose reader goes away, window and
hop checked and layered (command line over a ``--model`` TOML over defaults) by replay's code, the same
window warning, options of ``--windows`` refused without it, and ``--ray`` that takes no path."""

from __future__ import annotations

import argparse
import fcntl
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.fixtures import free_tcp_port
from support.process import streamd_command, streamd_env

from streamd.cli import build_parser, main
from streamd.commands.classify import DEFAULT_HOP_S, window_settings

SR = 16000
PIPE_BYTES = 4096  # the smallest pipe Linux gives: classify's output fills it long before it ends


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _last_error(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def _replay(clip: Path, *extra: str) -> list[str]:
    port = free_tcp_port()
    return [
        "replay",
        str(clip),
        "--speed",
        "max",
        "--no-dashboard",
        "--publish",
        f"tcp://127.0.0.1:{port}",
        *extra,
    ]


def test_a_reader_that_goes_away_ends_classify_quietly(tmp_path: Path, small_checkpoint: Path) -> None:
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(SR // 2, dtype=np.float32), SR)
    argv = ["classify", "--checkpoint", small_checkpoint, "--top-k", "50", *[short] * 12]  # ~12 kB of text
    proc = subprocess.Popen(
        streamd_command(argv), env=streamd_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # before the child has written
    first = proc.stdout.read(10)  # ``| head -c 10``
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert first == str(short).encode()[:10]
    assert "error" not in err and "Traceback" not in err


def test_classify_says_a_file_of_digital_silence_has_scores_of_no_meaning(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path, capsys
) -> None:
    """Pure digital silence, stereo channels that cancel, or a constant (DC) offset got "crickets 0.055"
    without a word, while evaluate leaves such clips out as digital silence: classify still scores them,
    and says in one line on stderr (and ``"digital_silence": true`` in JSON) that the scores mean
    nothing, by evaluate's own test (``training.own_data.scan_file``)."""
    from audio_core.digital_silence import SILENCE_NOTE
    from training.own_data import scan_file

    audio = sf.read(clips[0], dtype="float32")[0]
    files = {
        "zeros": np.zeros(SR * 5, np.float32),
        "cancel": np.stack([audio, -audio], axis=1),
        "dc": np.full(SR * 5, 0.25, np.float32),  # a constant offset: the fbank takes it out of each frame
        "clip": audio,
        "clip_on_dc": 0.25 + audio * 1e-3,  # a quiet sound over an offset is a signal
    }
    for name, samples in files.items():
        sf.write(tmp_path / f"{name}.wav", samples, SR, subtype="FLOAT")
    paths = [str(tmp_path / f"{name}.wav") for name in files]
    signal = [False, False, False, True, True]
    assert [scan_file(Path(p))[1] for p in paths] == signal  # evaluate's test of signal
    for json_output in (False, True):
        argv = ["classify", *paths, "--checkpoint", str(small_checkpoint), *(["--json"] * json_output)]
        assert main(argv) == 0
        out, err = capsys.readouterr()
        note = SILENCE_NOTE
        assert err.splitlines() == [f"streamd: warning: {p}: {note}" for p in paths[:3]]
        assert len(out.splitlines()) == 5
    said = [json.loads(line).get("digital_silence", False) for line in out.splitlines()]
    assert said == [True, True, True, False, False]


@pytest.mark.parametrize(
    ("classify", "replay"),
    [
        (["--hop-s", "inf"], ["--hop", "inf"]),
        (["--hop-s", "nan"], ["--hop", "nan"]),
        (["--hop-s", "1000"], ["--hop", "1000"]),
        (["--windows", "--window-s", "inf"], ["--window", "inf"]),
        (["--windows", "--window-s", "nan"], ["--window", "nan"]),
        (["--windows", "--window-s", "100"], ["--window", "100"]),
        (["--windows", "--window-s", "0"], ["--window", "0"]),
    ],
)
def test_window_and_hop_are_checked_as_replay_checks_them(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path, capsys, classify: list[str], replay: list[str]
) -> None:
    out = tmp_path / "o.csv"
    argv = ["classify", str(clips[0]), "--checkpoint", str(small_checkpoint), "--out", str(out), *classify]
    if "--windows" not in classify:
        argv.remove("--out")
        argv.remove(str(out))
    assert main(argv) == 2
    mine = _last_error(capsys)
    assert main(_replay(clips[0], "--checkpoint", str(small_checkpoint), *replay)) == 2
    assert mine == _last_error(capsys)
    assert mine.startswith("streamd: error: command line: windows.") and "internal" not in mine
    assert not out.exists()


def test_window_settings_come_from_the_command_line_the_model_toml_or_the_defaults(
    tmp_path: Path, small_checkpoint: Path
) -> None:
    toml = _write(
        tmp_path / "m.toml", f'[model]\ncheckpoint = "{small_checkpoint}"\n[windows]\nhop_s = 2.0\n'
    )

    def settings(**given: object) -> tuple[float | None, float, bool]:
        names = {"model": "default", "checkpoint": None, "window_s": None, "hop_s": None, **given}
        windows, hop_given = window_settings(argparse.Namespace(**names))
        return windows.window_s, windows.hop_s, hop_given

    assert settings() == (None, DEFAULT_HOP_S, False)  # the checkpoint's own window, classify's own hop
    assert settings(model=str(toml)) == (None, 2.0, True)
    assert settings(model=str(toml), hop_s=0.5, window_s=3.0) == (3.0, 0.5, True)
    assert settings(window_s=3.0) == (3.0, DEFAULT_HOP_S, False)  # --windows then hops half the window


def test_windows_follow_the_model_toml_as_replay_does(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path, capsys
) -> None:
    text = f'[model]\ncheckpoint = "{small_checkpoint}"\n[windows]\nwindow_s = 3.0\nhop_s = 2.0\n'
    toml = _write(tmp_path / "m.toml", text)
    assert main(_replay(clips[0], "--model", str(toml), "--json")) == 0
    out, err = capsys.readouterr()
    replayed = [
        (m["t_start"], m["t_end"]) for m in map(json.loads, out.splitlines()) if m["type"] == "prediction"
    ]
    replay_warning = [line for line in err.splitlines() if "warning: window" in line]
    assert replayed == [(0.0, 3.0), (2.0, 5.0)] and len(replay_warning) == 1
    windows = tmp_path / "w.jsonl"
    argv = [
        "classify",
        "--windows",
        "--no-progress",
        "--format",
        "jsonl",
        "--model",
        str(toml),
        str(clips[0]),
    ]
    assert main([*argv, "--out", str(windows)]) == 0
    rows = [json.loads(line) for line in windows.read_text().splitlines()]
    assert [(r["t_start"], r["t_end"]) for r in rows] == replayed
    assert [
        line for line in capsys.readouterr().err.splitlines() if "warning: window" in line
    ] == replay_warning
    assert main([*argv, "--out", str(tmp_path / "cli.jsonl"), "--hop-s", "1"]) == 0  # the command line wins
    rows = [json.loads(line) for line in (tmp_path / "cli.jsonl").read_text().splitlines()]
    assert [(r["t_start"], r["t_end"]) for r in rows] == [(0.0, 3.0), (1.0, 4.0), (2.0, 5.0)]
    capsys.readouterr()
    assert main(["classify", "--model", str(toml), str(clips[0])]) == 0  # clip level: the checkpoint's window
    assert (
        "note: the model TOML's window (3 s) applies to --windows, run and replay" in capsys.readouterr().err
    )


def test_a_window_other_than_the_models_is_warned_about(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path, capsys
) -> None:
    argv = ["classify", "--windows", "--no-progress", "--checkpoint", str(small_checkpoint), str(clips[0])]
    assert main([*argv, "--out", str(tmp_path / "o.csv"), "--window-s", "10"]) == 0
    assert "streamd: warning: window 10 s differs from the 5 s the model small was trained on" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "option",
    [
        ["--window-s", "3"],
        ["--min-score", "0.5"],
        ["--min-score", "0"],  # a zero is given too
        ["--format", "jsonl"],
        ["--no-progress"],
        ["--out", "o.csv"],
        ["--ray"],
    ],
)
def test_options_of_windows_are_refused_without_it(
    clips: list[Path], small_checkpoint: Path, capsys, option: list[str]
) -> None:
    assert main(["classify", str(clips[0]), "--checkpoint", str(small_checkpoint), *option]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"streamd: error: {option[0]} needs --windows (window-level output)\n"


def test_options_of_ray_are_refused_without_it(
    tmp_path: Path, clips: list[Path], small_checkpoint, capsys
) -> None:
    argv = ["classify", "--windows", "--out", str(tmp_path / "o.csv"), "--checkpoint", str(small_checkpoint)]
    assert main([*argv, "--ray-actors", "2", "--ray-address", "auto", str(clips[0])]) == 2
    assert capsys.readouterr().err == "streamd: error: --ray-address, --ray-actors need --ray\n"
    assert not (tmp_path / "o.csv").exists()


def test_json_with_windows_writes_json_lines(
    tmp_path: Path, clips: list[Path], small_checkpoint, capsys
) -> None:
    argv = ["classify", "--windows", "--json", "--no-progress", "--checkpoint", str(small_checkpoint)]
    out = tmp_path / "w.out"
    assert main([*argv, "--out", str(out), str(clips[0])]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["file"], r["t_start"], r["t_end"]) for r in rows] == [(str(clips[0]), 0.0, 5.0)]
    assert main([*argv, "--format", "csv", "--out", str(tmp_path / "o.csv"), str(clips[0])]) == 2
    assert "--json writes JSON lines" in capsys.readouterr().err


def test_ray_takes_no_path() -> None:
    argv = ["classify", "--windows", "--out", "o.csv", "--ray", "full.wav"]
    args = build_parser(argv).parse_args(argv)
    assert args.ray and args.ray_address is None and args.paths == ["full.wav"]
    argv = ["classify", "--windows", "--out", "o.csv", "--ray", "--ray-address", "auto", "a.wav", "b.wav"]
    args = build_parser(argv).parse_args(argv)
    assert args.ray and args.ray_address == "auto" and args.paths == ["a.wav", "b.wav"]


def test_the_old_ray_address_form_is_one_line(capsys) -> None:
    assert main(["classify", "--windows", "--out", "o.csv", "--ray", "auto", "a.wav"]) == 2
    err = capsys.readouterr().err
    assert (
        err == "streamd: error: 'auto' would be read as an audio file: a Ray cluster goes in --ray-address\n"
    )


def test_precision_comes_from_the_model_toml_unless_given(tmp_path: Path, small_checkpoint: Path) -> None:
    from streamd.model_loading import resolve_model

    toml = _write(tmp_path / "p.toml", f'[model]\ncheckpoint = "{small_checkpoint}"\nprecision = "int8"\n')

    def precision(*extra: str) -> str:
        args = build_parser(["classify"]).parse_args(["classify", "--model", str(toml), "x.wav", *extra])
        return resolve_model(args, compute="cpu").precision

    assert precision() == "int8"  # the TOML's, not a command-line default
    assert precision("--precision", "fp32") == "fp32"


def test_window_warnings_of_a_recurrent_model(tiny_recurrent) -> None:
    """A recurrent model steps per column whatever the window: a window asked for is warned about, the
    hop (which only picks the steps a clip score averages) is not."""
    from streamd.model_loading import window_warnings

    assert window_warnings(None, 8.0, tiny_recurrent) == []
    assert window_warnings(2.0, 1.0, tiny_recurrent) == [
        "a window does not apply to the recurrent model tiny: a result each 0.04 s"
    ]
    # run / replay: one result per column whatever --hop (it was ignored without a word)
    assert window_warnings(None, 7.0, tiny_recurrent, hop_given=True) == [
        "a hop does not apply to the recurrent model tiny: a result each 0.04 s"
    ]


@pytest.mark.parametrize("threads", ["-1", "1025", "100000"])
def test_thread_counts_beyond_the_daemons_bounds_are_one_line(
    clips: list[Path], small_checkpoint: Path, capsys, threads: str
) -> None:
    """The daemon's bound (``[engine] threads <= 1024``): torch crashed on 100000 (a segfault)."""
    assert main(["classify", str(clips[0]), "--checkpoint", str(small_checkpoint), "--threads", threads]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"streamd: error: --threads must be between 0 and 1024, got {threads}\n"


def test_a_file_named_with_a_leading_dash_is_pointed_to_a_dot_slash(
    tmp_path: Path, small_checkpoint: Path, capsys, monkeypatch
) -> None:
    """``streamd classify -dash.wav`` said only "the following arguments are required: PATH"."""
    monkeypatch.chdir(tmp_path)
    sf.write(tmp_path / "-dash.wav", np.full(SR, 0.1, np.float32) * np.sin(np.arange(SR)), SR)
    with pytest.raises(SystemExit) as leaving:
        main(["classify", "--checkpoint", str(small_checkpoint), "-dash.wav"])
    assert leaving.value.code == 2
    assert capsys.readouterr().err.strip().endswith("(-dash.wav is a file: write it as ./-dash.wav)")
    for named in (["./-dash.wav"], ["--", "-dash.wav"]):
        assert main(["classify", "--checkpoint", str(small_checkpoint), *named]) == 0
        assert capsys.readouterr().out.startswith(f"{named[-1]}: ")
