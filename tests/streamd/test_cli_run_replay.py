"""``streamd replay`` / ``run`` / ``devices`` from the command line: real files, real ZMQ, clear errors."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.fixtures import free_tcp_port
from zmq_helpers import Collector, validate

from streamd import model_loading
from streamd.cli import main
from streamd.commands.replay import parse_speed
from streamd.model_loading import shipped_model_path
from streamd.publisher import Publisher

REPO = Path(__file__).resolve().parents[2]


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _replay_args(clip: Path, checkpoint: Path, port: int, *extra: str) -> list[str]:
    return [
        "replay",
        str(clip),
        "--checkpoint",
        str(checkpoint),
        "--publish",
        f"tcp://127.0.0.1:{port}",
        "--no-dashboard",
        *extra,
    ]


def test_replay_prints_and_publishes_the_same_valid_messages(clips, small_checkpoint, free_port, capsys):
    collector = Collector(f"tcp://127.0.0.1:{free_port}", seconds=300.0).start()
    argv = _replay_args(clips[0], small_checkpoint, free_port, "--speed", "max", "--json", "--hop", "0.5")
    assert main([*argv, "--window", "2", "--wait-subscriber", "60", "--top-k", "3"]) == 0
    printed = _lines(capsys.readouterr().out)
    # every message printed went over ZMQ too (a periodic "finished" may come before the final one)
    assert collector.wait_for(lambda msgs: len(msgs) >= len(printed), 60)
    received = collector.stop()
    for msg in printed:
        validate(msg)
    preds = [m for m in printed if m["type"] == "prediction"]
    assert [p["t_start"] for p in preds] == [0.5 * k for k in range(7)]
    assert all(len(p["labels"]) == 3 and p["model"] == "small" for p in preds)
    assert printed[-1]["type"] == "status" and printed[-1]["state"] == "finished"
    assert received == printed  # the --json lines are exactly what went over ZMQ


def test_a_replay_with_a_tiny_publish_queue_loses_no_message(
    clips, small_checkpoint, free_port, tmp_path, capsys
):
    """A replay's overload policy is ``block``: a full publish queue holds results back, never drops
    them (with ``queue_size = 1`` two streams lost most predictions and one its every status)."""
    config = tmp_path / "tiny_queue.toml"
    config.write_text("[publish]\nqueue_size = 1\n")
    argv = _replay_args(clips[0], small_checkpoint, free_port, "--speed", "max", "--json", "--hop", "0.5")
    assert main([*argv[:2], str(clips[1]), *argv[2:], "--window", "2", "--config", str(config)]) == 0
    printed = _lines(capsys.readouterr().out)
    for stream in (clips[0].stem, clips[1].stem):
        mine = [m for m in printed if m["stream"] == stream]
        assert sum(m["type"] == "prediction" for m in mine) == 7
        assert [m["state"] for m in mine if m["type"] == "status"] == ["starting", "finished"]
        assert mine[-1]["counters"]["publish_dropped"] == 0


def test_check_says_what_would_run_and_runs_nothing(clips, small_checkpoint, free_port, capsys):
    collector = Collector(f"tcp://127.0.0.1:{free_port}", seconds=3.0).start()
    argv = _replay_args(clips[0], small_checkpoint, free_port, "--speed", "max", "--json", "--hop", "0.5")
    assert main([*argv[:2], str(clips[1]), *argv[2:], "--check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[2].strip() for line in out[:2]] == [clips[0].stem, clips[1].stem]
    assert "model small on cpu" in out[0] and "hop 0.5 s" in out[0]
    assert out[-1] == f"streamd: check passed: 2 stream(s), publishing on tcp://127.0.0.1:{free_port}"
    assert collector.stop() == []  # nothing was classified or published


def test_check_binds_listens_and_connects_nothing(clips, small_checkpoint, free_port, tmp_path, capsys):
    """A check beside the running service: its endpoint, metrics port and broker client id are taken."""
    running = Publisher(f"tcp://127.0.0.1:{free_port}")
    running.start()  # the service holds the endpoint
    metrics_port = free_tcp_port()
    try:
        with socket.create_server(("127.0.0.1", metrics_port)):  # and its metrics port
            metrics = f"127.0.0.1:{metrics_port}"
            argv = _replay_args(clips[0], small_checkpoint, free_port, "--metrics", metrics)
            # no broker listens here: a sink that connected would retry, never fail the check
            argv += ["--mqtt", f"mqtt://127.0.0.1:{free_tcp_port()}", "--save-clips", str(tmp_path / "clips")]
            assert main([*argv, "--check"]) == 0, capsys.readouterr().err
    finally:
        running.stop(timeout=0.0)
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("streamd: check passed: 1 stream(s)")
    in_use = "in use (a running streamd may hold it); not bound by the check"
    assert f"streamd: check: tcp://127.0.0.1:{free_port}: {in_use}" in out
    assert f"streamd: check: metrics 127.0.0.1:{metrics_port}: {in_use}" in out
    assert not [t.name for t in threading.enumerate() if "mqtt" in t.name.lower() or "paho" in t.name.lower()]
    assert not (tmp_path / "clips").exists()  # checked, not created
    assert not [t.name for t in threading.enumerate() if t.name == "streamd-clips"]


def test_more_engine_threads_than_cores_are_warned_about(
    clips, small_checkpoint, free_port, tmp_path, capsys
):
    config = _write(tmp_path / "threads.toml", "[engine]\nthreads = 1000\n")
    argv = _replay_args(clips[0], small_checkpoint, free_port, "--config", str(config), "--check")
    assert main(argv) == 0
    assert "streamd: warning: [engine] threads = 1000 is more than the" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--publish", "ipc:///nonexistent-folder/x.ipc"], "x.ipc: No such file or directory"),
        (["--metrics", "192.0.2.1:9109", "--insecure"], "--metrics: cannot listen on 192.0.2.1:9109"),
        (["--connect-proxy", "tcp://127.0.0.1:1"], "--publish and --connect-proxy exclude each other"),
    ],
)
def test_check_fails_where_the_run_would_fail_to_bind(
    clips, small_checkpoint, free_port, capsys, extra, message
):
    base = _replay_args(clips[0], small_checkpoint, free_port)
    if extra[0] != "--connect-proxy":  # this endpoint instead of the free port's
        base = [a for a in base if a not in ("--publish", f"tcp://127.0.0.1:{free_port}")]
    argv = base + extra
    assert main([*argv, "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert main(argv) == 2
    assert capsys.readouterr().err == err  # the run itself fails with the same line


def test_check_fails_on_a_truncated_file_as_the_run_does(
    clips, small_checkpoint, free_port, tmp_path, capsys
):
    """``replay --check cut.wav`` said "check passed", exit 0, though the run ends "the file ends 3.33 s
    before its header says (truncated)", exit 1: the check knows it from the header and the file's size,
    and fails with the run's own line."""
    import soundfile as sf

    whole = tmp_path / "whole.wav"
    sf.write(whole, sf.read(clips[0], dtype="float32")[0], 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    argv = _replay_args(cut, small_checkpoint, free_port, "--speed", "max")
    assert main([*argv, "--check"]) == 1
    out, err = capsys.readouterr()
    said = f"streamd: error: {cut}: the file ends 3.33 s before its header says (truncated)\n"
    assert err == said and "check passed" not in out, (out, err)
    assert main(argv) == 1
    assert capsys.readouterr().err.endswith(said)  # the run itself ends with the same line
    assert main([*_replay_args(whole, small_checkpoint, free_port), "--check"]) == 0


@pytest.mark.parametrize(
    ("curve", "message"),
    [
        (["--connect-proxy", "{proxy}", "--curve-server-key", "{none}", "--curve-secret-key", "{site_s}"],
         "key file not found: {none}"),
        (["--connect-proxy", "{proxy}", "--curve-server-key", "{proxy_p}", "--curve-secret-key", "{site_p}"],
         "{site_p} holds no secret key"),
        (["--connect-proxy", "{proxy}", "--curve-server-key", "{clip}", "--curve-secret-key", "{site_s}"],
         "cannot read key file {clip}"),
        (["--publish", "{pub}", "--curve-secret-key", "{none}", "--curve-allow-dir", "{allow}"],
         "key file not found: {none}"),
        (["--publish", "{pub}", "--curve-secret-key", "{proxy_s}", "--curve-allow-dir", "{empty}"],
         "no client public keys (*.key) in {empty}"),
        (["--publish", "{pub}", "--curve-secret-key", "{proxy_s}", "--curve-allow-dir", "{none}"],
         "allowed client key directory not found: {none}"),
    ],
)  # fmt: skip
def test_check_loads_the_curve_key_files_as_the_run_does(
    clips, small_checkpoint, free_port, tmp_path, capsys, curve, message
):
    """``--check`` passed with a missing or wrong key file and the restarted service then exited 2: it
    loads every key file as the run does (``Publisher.check``) and fails with the run's own line."""
    from streamd.security import create_key_pair

    keys, allow, empty = tmp_path / "keys", tmp_path / "allowed", tmp_path / "empty"
    proxy_p, proxy_s = create_key_pair(keys, "proxy")
    site_p, site_s = create_key_pair(keys, "site1")
    allow.mkdir()
    empty.mkdir()
    (allow / "site1.key").write_bytes(site_p.read_bytes())
    values = {"proxy": f"tcp://127.0.0.1:{free_tcp_port()}", "pub": f"tcp://127.0.0.1:{free_port}",
              "none": str(tmp_path / "none"), "clip": str(clips[0]), "allow": str(allow),
              "empty": str(empty), "proxy_p": str(proxy_p), "proxy_s": str(proxy_s),
              "site_p": str(site_p), "site_s": str(site_s)}  # fmt: skip
    argv = ["replay", str(clips[0]), "--checkpoint", str(small_checkpoint), "--no-dashboard"]
    argv += [arg.format(**values) for arg in curve]
    assert main([*argv, "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"streamd: error: {message.format(**values)}") and err.count("\n") == 1, err
    assert main(argv) == 2
    assert capsys.readouterr().err == err  # the run itself fails with the same line
    right = ["--curve-server-key", "{proxy_p}", "--curve-secret-key", "{site_s}"]  # the same, keys right
    if curve[0] == "--publish":
        right = ["--curve-secret-key", "{proxy_s}", "--curve-allow-dir", "{allow}"]
    argv[-4:] = [arg.format(**values) for arg in right]
    assert main([*argv, "--check"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.splitlines()[-1].startswith("streamd: check passed: 1 stream(s)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay", "missing.wav"], "missing.wav: no such file"),
        (["replay", "{bad}"], "unsupported or unreadable audio file"),
        (["replay", "{clip}", "--config", "{unknown_key}"], "windows.hop: unknown key"),
        (["replay", "{clip}", "--config", "{wrong_type}"], "publish.top_k: expected int, got str"),
        (["replay", "{clip}", "--model", "nonesuch"], "unknown model 'nonesuch'"),
        (["replay", "{clip}", "--checkpoint", "{bad}"], "not a readable safetensors checkpoint"),
        (["replay", "{clip}", "--checkpoint", "{ckpt}", "--hop", "0.015"], "multiple of the frame shift"),
        (
            ["replay", "{clip}", "--checkpoint", "{ckpt}", "--window", "0.00001"],
            "window_s must be a multiple of the frame shift (10 ms), got 1e-05",
        ),
        (["run", "--device", "no-such-device-xyz"], "device"),
        (["replay", "{clip}", "--checkpoint", "{ckpt}", "--save-clips", "{bad}"], "is not a folder"),
        (["replay", "{clip}", "--checkpoint", "{ckpt}", "--save-clips", "{bad}/clips"], "cannot create"),
        (
            ["replay", "{clip}", "--checkpoint", "{ckpt}", "--save-clips", "{bad}/clips", "--check"],
            "cannot create",
        ),
        (  # a file system that refuses folders (/proc) passed the checks of the path alone: --check approved
            ["replay", "{clip}", "--checkpoint", "{ckpt}", "--save-clips", "/proc/streamd-clips", "--check"],
            "--save-clips /proc/streamd-clips: cannot create the folder",
        ),
        (["replay", "{clip}", "--checkpoint", "{bad}", "--check"], "not a readable safetensors checkpoint"),
        (["replay", "{clip}", "--stream-prefix", "p" * 40], "--stream-prefix: at most 32 characters"),
        (["replay", "{clip}", "--checkpoint", "{ckpt}", "--hop", "0.015", "--check"], "frame shift"),
        (  # a window setting from a file is named by its file and key, as every other setting is
            ["replay", "{clip}", "--checkpoint", "{ckpt}", "--config", "{odd_hop}"],
            "c.toml: windows.hop_s must be a multiple of the frame shift (10 ms), got 0.015",
        ),
        (
            ["replay", "{clip}", "--checkpoint", "{ckpt}", "--config", "{tiny_window}"],
            "d.toml: windows.window_s: the model",
        ),
    ],
)
def test_bad_input_gives_one_line_and_a_nonzero_exit(
    tmp_path, clips, small_checkpoint, capsys, argv, message
):
    values = {
        "clip": str(clips[0]),
        "ckpt": str(small_checkpoint),
        "bad": str(_write(tmp_path / "bad.wav", "this is not audio")),
        "unknown_key": str(_write(tmp_path / "a.toml", "[windows]\nhop = 1.0\n")),
        "wrong_type": str(_write(tmp_path / "b.toml", '[publish]\ntop_k = "five"\n')),
        "odd_hop": str(_write(tmp_path / "c.toml", "[windows]\nhop_s = 0.015\n")),
        "tiny_window": str(_write(tmp_path / "d.toml", "[windows]\nwindow_s = 0.05\n")),
    }
    code = main([arg.format(**values) for arg in argv] + ["--no-dashboard"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("streamd: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err


def test_evaluate_refuses_an_out_folder_it_cannot_write_before_evaluating(tmp_path, small_checkpoint, capsys):
    not_a_folder = _write(tmp_path / "report", "x")
    code = main(["evaluate", "--checkpoint", str(small_checkpoint), "--folders", str(tmp_path / "none"),
                 "--out", str(not_a_folder)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err == f"streamd: error: --out {not_a_folder}: exists and is not a folder\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_port_in_use_is_one_clear_line(clips, small_checkpoint, free_port, capsys):
    holder = Publisher(f"tcp://127.0.0.1:{free_port}")
    holder.start()
    try:
        code = main(_replay_args(clips[0], small_checkpoint, free_port, "--speed", "max"))
    finally:
        holder.stop()
    err = capsys.readouterr().err
    assert code == 2 and "address already in use" in err and err.count("\n") == 1


def test_the_default_model_missing_is_explained(clips, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(model_loading, "DEFAULT_MODELS_DIR", tmp_path)  # an install without the models
    assert not shipped_model_path("default").exists()
    assert main(["replay", str(clips[0]), "--no-dashboard"]) == 2
    err = capsys.readouterr().err
    assert "'default' model is not installed" in err and "--checkpoint" in err


def test_a_model_toml_names_the_checkpoint(clips, small_checkpoint, tmp_path, free_port, capsys):
    model = _write(
        tmp_path / "m.toml", f'[model]\ncheckpoint = "{small_checkpoint}"\n[windows]\nwindow_s = 2.5\n'
    )
    argv = ["replay", str(clips[0]), "--model", str(model), "--speed", "max", "--json", "--no-dashboard"]
    assert main([*argv, "--publish", f"tcp://127.0.0.1:{free_port}"]) == 0
    preds = [m for m in _lines(capsys.readouterr().out) if m["type"] == "prediction"]
    assert [(p["t_start"], p["t_end"]) for p in preds] == [(0.0, 2.5), (1.0, 3.5), (2.0, 4.5), (2.5, 5.0)]


def test_devices_lists_inputs_or_says_there_are_none(capsys):
    code = main(["devices"])
    out, err = capsys.readouterr()
    if code == 0:
        assert out.strip() and err == ""
    else:
        assert code == 2 and "no audio input devices found" in err and err.count("\n") == 1


def test_speed_parsing():
    assert parse_speed("max") is None and parse_speed("MAX") is None
    assert parse_speed("2.5") == 2.5
    for bad in ("0", "-1", "fast", "inf", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="number or 'max'"):
            parse_speed(bad)
    assert parse_speed("0.01") == 0.01
    with pytest.raises(argparse.ArgumentTypeError, match=r"at least 0\.01"):
        parse_speed("1e-9")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay", "x.wav", "--speed", "0"], "argument --speed: must be a positive finite number or 'max'"),
        (["replay", "x.wav", "--speed", "nan"], "argument --speed: must be a positive finite number"),
        (["proxy", "--capture", ""], "argument --capture: is empty (give a path)"),
        (["listen", "--count", "x"], "argument --count: invalid int value: 'x'"),
        (["replay"], "the following arguments are required: PATH"),
        (["replay", "x.wav", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["no-such-command"], "argument COMMAND: invalid choice: 'no-such-command'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)  # fmt: skip
def test_argument_errors_are_one_streamd_line_and_exit_2(argv, message, capsys):
    """argparse's own refusals (a ``type=`` check, a missing or unknown argument) printed its usage text
    and ``streamd replay: error: ...``; every one is now the line every other bad input gives."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"streamd: error: {message}") and err.count("\n") == 1, err


def test_a_bad_speed_from_the_real_command_is_one_line_and_help_still_works():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = [sys.executable, "-m", "streamd", "replay", "x.wav"]
    bad = subprocess.run([*run, "--speed", "0"], capture_output=True, text=True, env=env, timeout=60)
    assert (bad.returncode, bad.stdout) == (2, "")
    speed = "argument --speed: must be a positive finite number or 'max', got '0'"
    assert bad.stderr == f"streamd: error: {speed}\n"
    helped = subprocess.run([*run, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert helped.returncode == 0 and helped.stderr == "", helped.stderr
    assert helped.stdout.startswith("usage: streamd replay") and "--speed X|max" in helped.stdout


def test_sigterm_stops_a_real_time_replay_within_two_seconds(clips, small_checkpoint, free_port):
    """A separate process, paced like a microphone, stopped by SIGTERM: clean exit and a final status."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    argv = _replay_args(clips[0], small_checkpoint, free_port, "--json", "--window", "1", "--hop", "0.5")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamd", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        first = json.loads(proc.stdout.readline())  # "starting": the pipeline is up
        assert first["state"] == "starting"
        time.sleep(1.6)
        proc.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - asked
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert took < 2.0 and b"Traceback" not in err
    msgs = [first, *_lines(out.decode())]
    for msg in msgs:
        validate(msg)
    assert msgs[-1]["type"] == "status" and msgs[-1]["state"] == "stopped"
    assert 1 <= len([m for m in msgs if m["type"] == "prediction"]) <= 3  # real time: ~1.6 s of audio


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", str(REPO / "configs/train/esc50_resnet_cnn.toml"), "--print-config"]]
)
def test_printing_into_a_pipe_nobody_reads_is_not_an_error(argv):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first line (``| head -0``)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "streamd", *argv], stdout=write_end, stderr=subprocess.PIPE, text=True,
            timeout=60, cwd=REPO,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and "error" not in proc.stderr.lower(), proc.stderr


def test_messages_name_a_checkpoint_by_the_name_training_gave_it(clips, small_checkpoint, tmp_path, capsys):
    from models.checkpoint import load_checkpoint, save_checkpoint

    model, info = load_checkpoint(small_checkpoint)
    info.extra = {**info.extra, "name": "garden_birds"}  # what ``streamd train --data garden_birds`` writes
    named = save_checkpoint(tmp_path / "model.safetensors", model, info)
    argv = ["replay", str(clips[0]), "--checkpoint", str(named), "--speed", "max", "--no-dashboard", "--json"]
    assert main([*argv, "--publish", "inproc://named-model"]) == 0
    predictions = [m for m in _lines(capsys.readouterr().out) if m["type"] == "prediction"]
    assert predictions and {m["model"] for m in predictions} == {"garden_birds"}


def test_a_broken_pipe_that_is_not_stdout_is_an_error(monkeypatch, capsys):
    from streamd.commands import devices

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")  # e.g. a helper process's pipe, while stdout is fine

    monkeypatch.setattr(devices, "run", broken)
    assert main(["devices"]) == 1
    assert capsys.readouterr().err == "streamd: internal error: BrokenPipeError: [Errno 32] Broken pipe\n"
