"""What an adversarial run broke, each with its exact observable outcome (see docs/robustness.md).

Real parts only: real FIFOs and pipes, files with non-UTF-8 names, crafted checkpoint headers, real
ZeroMQ sockets, ``streamd`` as a subprocess where the shell's view matters (pipes, signals).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import zmq
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from support.paths import REPO
from support.process import StreamdProcess, assert_clean_error, run_streamd, streamd_command, streamd_env

from streamd.cli import main
from streamd.timeline_legend import legend, timeline_symbols


def _replay_args(path: str | Path, checkpoint: Path, name: str, speed: str = "max") -> list[str]:
    return [
        "replay", str(path), "--speed", speed, "--checkpoint", str(checkpoint),
        "--publish", f"inproc://adv-{name}", "--no-dashboard", "--json",
    ]  # fmt: skip


def _final_status(stdout: str) -> dict:
    statuses = [json.loads(line) for line in stdout.splitlines() if '"status"' in line]
    return statuses[-1]


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory, known_audio) -> Path:
    path = tmp_path_factory.mktemp("adv") / "clip.wav"
    sf.write(path, known_audio, 16000)
    return path


# -- 1. pipes and FIFOs ------------------------------------------------------------------------------------


def test_a_fifo_is_read_once_and_replayed_whole(tmp_path, wav, checkpoint):
    fifo = tmp_path / "f.wav"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat '{wav}' > '{fifo}'"])
    result = run_streamd(*_replay_args(fifo, checkpoint, "fifo"), timeout=60)
    writer.wait(10)
    assert result.returncode == 0, result.describe()
    assert writer.returncode == 0  # the writer was not killed by SIGPIPE (one open, read to the end)
    final = _final_status(result.stdout)
    assert final["state"] == "finished" and final["counters"]["samples"] == 80000


def test_a_fifo_without_writer_fails_within_the_watchdog_time(tmp_path, checkpoint):
    fifo = tmp_path / "nobody.wav"
    os.mkfifo(fifo)
    result = run_streamd(*_replay_args(fifo, checkpoint, "nowriter"), timeout=60)
    line = assert_clean_error(result, "nobody.wav", "no data arrived within 3 s", exit_code=2)
    assert line.endswith("(is anything writing to it?)")


@pytest.mark.parametrize("how", ["dash", "dev_stdin", "process_substitution"])
def test_stdin_and_pipes_replay_whole(how, wav, checkpoint):
    cmd = " ".join(f"'{a}'" for a in streamd_command(_replay_args("X", checkpoint, how)))
    target = {"dash": "-", "dev_stdin": "/dev/stdin", "process_substitution": f"<(cat '{wav}')"}[how]
    cmd = cmd.replace("'X'", target)
    if how != "process_substitution":
        cmd = f"cat '{wav}' | {cmd}"
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60, env=streamd_env())
    assert proc.returncode == 0, proc.stderr
    final = _final_status(proc.stdout)
    assert final["state"] == "finished" and final["counters"]["samples"] == 80000


@pytest.mark.parametrize("output", ["json", "dashboard", "closed"])
def test_output_that_cannot_be_written_is_one_error_line_and_exit_1(output, wav, checkpoint):
    """--json lines or the dashboard to a full disk (or a closed stdout): the run goes on, the loss is
    said in one line at the end (how many JSON lines), exit 1, never a traceback."""
    args = _replay_args(wav, checkpoint, f"out-{output}")
    if output == "dashboard":
        args.remove("--no-dashboard")
        args.remove("--json")
    cmd = " ".join(f"'{a}'" for a in streamd_command(args))
    redirect = ">&-" if output == "closed" else "> /dev/full"
    proc = subprocess.run(
        ["bash", "-c", f"{cmd} {redirect}"], capture_output=False, stderr=subprocess.PIPE, text=True,
        timeout=60, env=streamd_env(),
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    if output == "dashboard":
        assert lines[0] == "streamd: error: the dashboard could not write its output: No space left on device"
    else:
        why = "the output is closed" if output == "closed" else "No space left on device"
        assert lines[0].startswith(f"streamd: error: --json output failed ({why}): ")
        assert lines[0].endswith(" message(s) not written")


@pytest.mark.parametrize("command", [["classify", "{wav}", "--checkpoint", "{ckpt}"], ["keys", "{tmp}"]])
def test_a_printing_command_whose_output_is_full_says_so_without_internal_error(
    command, wav, checkpoint, tmp_path
):
    """``classify`` (or ``keys``, ``train --print-config``...) into a full disk said "internal error:
    OSError" as if streamd had a bug: it is the output that failed, and the line says so."""
    args = [a.format(wav=wav, ckpt=checkpoint, tmp=tmp_path / "keys") for a in command]
    cmd = " ".join(f"'{a}'" for a in streamd_command(args))
    proc = subprocess.run(
        ["bash", "-c", f"{cmd} > /dev/full"], stderr=subprocess.PIPE, text=True, timeout=60, env=streamd_env()
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "streamd: error: output could not be written: No space left on device"
    ), proc.stderr


def test_a_closed_stderr_keeps_stdout_json_and_the_exit_status(tmp_path, wav, checkpoint):
    """Started with fd 2 closed (``2>&-``): messages meant for stderr never land in stdout's JSON, and the
    exit status is the command's (a failed flush of stderr at exit had made every run exit 1)."""
    for path, code in ((wav, 0), (tmp_path / "missing.wav", 2)):
        cmd = " ".join(f"'{a}'" for a in streamd_command(_replay_args(path, checkpoint, f"closed-{code}")))
        done = subprocess.run(
            ["bash", "-c", f"{cmd} 2>&-"], capture_output=True, text=True, timeout=60, env=streamd_env()
        )
        assert done.returncode == code
        assert all(line.startswith('{"schema"') for line in done.stdout.splitlines())
        assert bool(done.stdout) == (code == 0)


def test_a_non_blocking_stdout_with_a_slow_reader_loses_no_line(tmp_path, wav, checkpoint):
    """A pipe left non-blocking by the parent: once its 64 KB fill up, each write failed with
    BlockingIOError, which stopped the --json output for good. streamd makes its outputs blocking."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    argv = [*_replay_args(wav, checkpoint, "nonblocking"), "--window", "1", "--hop", "0.01"]
    proc = subprocess.Popen(
        streamd_command(argv), stdout=write_end, stderr=subprocess.PIPE, env=streamd_env()
    )
    os.close(write_end)
    time.sleep(3.0)  # the reader is late: the pipe fills while streamd writes
    with os.fdopen(read_end, "rb") as reader:
        out = reader.read()
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    lines = out.decode().splitlines()
    assert len(out) > 65536 and all(json.loads(line)["schema"] == "streamd/1" for line in lines)
    final = json.loads(lines[-1])
    assert final["state"] == "finished" and final["counters"]["windows"] == len(lines) - 2


def test_sigterm_stops_a_replay_whose_json_reader_stopped_reading(tmp_path, checkpoint):
    """A replay's publisher waits for room rather than drop a result; with the --json reader stalled
    (``| less`` left open) everything waits on it. A stop must not: SIGTERM releases the publisher (what
    it then drops is counted) and the command ends within seconds (it hung for good)."""
    fifo = tmp_path / "stalled"
    os.mkfifo(fifo)
    config = tmp_path / "q.toml"
    config.write_text("[publish]\nqueue_size = 2\n")
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # open, never read
    try:
        with open(fifo, "wb") as out:
            argv = [*_replay_args(REPO / "examples" / "long.wav", checkpoint, "stalled"), "--hop", "0.05"]
            proc = subprocess.Popen(
                streamd_command([*argv, "--config", str(config)]), stdout=out, stderr=subprocess.PIPE,
                env=streamd_env(),
            )  # fmt: skip
        time.sleep(8.0)  # started, the pipe's 64 KB full, the publish queue full: everything waits
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert "Traceback" not in proc.stderr.read().decode()
    finally:
        os.close(reader)
        if proc.poll() is None:
            proc.kill()


def test_an_empty_wav_from_a_pipe_is_an_error_as_from_a_file(tmp_path, checkpoint):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype="float32"), 16000)
    cmd = " ".join(f"'{a}'" for a in streamd_command(_replay_args("-", checkpoint, "emptypipe")))
    proc = subprocess.run(
        ["bash", "-c", f"cat '{empty}' | {cmd}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=streamd_env(),
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["streamd: error: <stdin>: contains no audio samples"]
    by_path = run_streamd(*_replay_args(empty, checkpoint, "emptyfile"), timeout=60)
    assert_clean_error(by_path, "empty.wav", "contains no audio samples", exit_code=2)
    for source, why in ((": |", "no bytes before the writer closed it"), ("< /dev/null", "/dev/null")):
        nothing = subprocess.run(  # not one byte: said so, not "format not recognised"
            ["bash", "-c", f"{source} {cmd}" if "|" in source else f"{cmd} {source}"],
            capture_output=True,
            text=True,
            timeout=60,
            env=streamd_env(),
        )
        assert nothing.returncode == 2
        assert nothing.stderr.strip().splitlines() == [f"streamd: error: <stdin>: empty input ({why})"]


def test_a_file_too_short_to_resample_fails_in_replay_as_in_classify(tmp_path, checkpoint):
    one = tmp_path / "one.wav"  # one sample at 44.1 kHz leaves none at 16 kHz
    sf.write(one, np.full(1, 0.1, dtype="float32"), 44100)
    said = "one.wav: 1 sample(s) at 44100 Hz leave none at 16000 Hz"
    replayed = run_streamd(*_replay_args(one, checkpoint, "onesample"), timeout=60)
    assert_clean_error(replayed, said, exit_code=1)
    assert _final_status(replayed.stdout)["state"] == "device_error"
    classified = run_streamd("classify", str(one), "--checkpoint", str(checkpoint), timeout=60)
    assert_clean_error(classified, said, exit_code=1)
    three = tmp_path / "three.wav"  # three leave one: padded to a window, classified
    sf.write(three, np.full(3, 0.1, dtype="float32"), 44100)
    assert run_streamd(*_replay_args(three, checkpoint, "threesamples"), timeout=60).returncode == 0


def test_a_wav_cut_short_is_said_to_be_truncated_in_replay_as_in_classify(tmp_path, known_audio, checkpoint):
    """A WAV whose bytes stop before its header's length (a recording cut short) was classified as if
    whole, exit 0; now its audio is classified and it ends as a truncated FLAC does: one line, exit 1."""
    whole = tmp_path / "whole.wav"
    sf.write(whole, np.concatenate([known_audio, known_audio]), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 3 // 4])
    said = "cut.wav: the file ends 2.50 s before its header says (truncated)"
    replayed = run_streamd(*_replay_args(cut, checkpoint, "cutwav"), timeout=60)
    assert_clean_error(replayed, said, exit_code=1)
    predictions = [json.loads(line) for line in replayed.stdout.splitlines() if '"prediction"' in line]
    assert predictions and predictions[-1]["t_end"] == pytest.approx(7.5, abs=0.02)
    classified = run_streamd("classify", str(cut), "--checkpoint", str(checkpoint), timeout=60)
    assert_clean_error(classified, said, exit_code=1)
    assert run_streamd(*_replay_args(whole, checkpoint, "wholewav"), timeout=60).returncode == 0


def _through_pipe(path: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``cat PATH | streamd ARGS`` (``-`` among them: standard input)."""
    cmd = " ".join(f"'{a}'" for a in streamd_command(args))
    return subprocess.run(
        ["bash", "-c", f"cat '{path}' 2>/dev/null | {cmd}"],  # cat may meet a closed pipe
        capture_output=True, text=True, timeout=60, env=streamd_env(),
    )  # fmt: skip


def test_a_wav_cut_short_is_said_to_be_truncated_from_a_pipe_or_a_fifo_as_by_path(
    tmp_path, known_audio, checkpoint
):
    """By path a cut WAV ends in one truncation line, exit 1; `cat cut.wav | streamd classify -`, the same
    into `replay -` (state finished) and `classify FIFO` exited 0 as if it were whole. Its header's
    explicit size is weighed against what the pipe delivered: the same line, exit 1."""
    whole = tmp_path / "whole.wav"
    sf.write(whole, np.concatenate([known_audio, known_audio]), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 3 // 4])
    said = "the file ends 2.50 s before its header says (truncated)"
    classified = _through_pipe(cut, ["classify", "-", "--checkpoint", str(checkpoint)])
    assert classified.returncode == 1 and "Traceback" not in classified.stderr, classified.stderr
    assert classified.stderr.splitlines()[0] == f"streamd: error: <stdin>: {said}"
    replayed = _through_pipe(cut, _replay_args("-", checkpoint, "cutpipe"))
    assert replayed.returncode == 1 and "Traceback" not in replayed.stderr, replayed.stderr
    assert replayed.stderr.splitlines() == [f"streamd: error: <stdin>: {said}"]
    final = _final_status(replayed.stdout)
    assert final["state"] == "device_error" and final["counters"]["samples"] == sf.info(cut).frames  # all
    fifo = tmp_path / "cut.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat '{cut}' > '{fifo}'"])
    from_fifo = run_streamd("classify", str(fifo), "--checkpoint", str(checkpoint), timeout=60)
    writer.wait(10)
    assert_clean_error(from_fifo, f"{fifo}: {said}", exit_code=1)


def test_rf64_from_a_pipe_is_refused_before_any_result(tmp_path, known_audio, checkpoint):
    """libsndfile read RF64 from a pipe 4 frames short and shifted from sample 35,663, and classify gave
    its scores without a word: it is refused as MP3 is (W64 reads whole and plays)."""
    rf64 = tmp_path / "clip.wav"
    sf.write(rf64, known_audio, 16000, format="RF64")
    proc = _through_pipe(rf64, ["classify", "--json", "-", "--checkpoint", str(checkpoint)])
    assert proc.returncode == 1 and proc.stdout == "", proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "streamd: error: <stdin>: RF64 cannot be read from a pipe; use WAV, AIFF, AU or OGG",
        "streamd: 1 of 1 file(s) could not be classified",
    ]
    assert run_streamd("classify", str(rf64), "--checkpoint", str(checkpoint), timeout=60).returncode == 0


def test_a_wav_whose_header_says_no_length_is_classified_and_replayed_whole(
    tmp_path, known_audio, checkpoint, capsys
):
    """A WAV whose RIFF and data sizes are both 0 (length unknown, as a writer that cannot seek back
    leaves it) was "contains no audio samples" (classify exit 1, replay exit 2): read to its end, it
    scores as the whole file in both."""
    whole = tmp_path / "whole.wav"
    sf.write(whole, known_audio, 16000, subtype="PCM_16")
    data = bytearray(whole.read_bytes())
    at = data.index(b"data") + 4
    data[4:8] = data[at : at + 4] = bytes(4)
    unsized = tmp_path / "unsized.wav"
    unsized.write_bytes(bytes(data))
    seen = {}
    for path in (whole, unsized):
        assert main(["classify", str(path), "--checkpoint", str(checkpoint), "--json"]) == 0
        classified = json.loads(capsys.readouterr().out)["labels"]
        assert main(_replay_args(path, checkpoint, f"unsized-{path.stem}")) == 0
        out = capsys.readouterr().out
        predictions = [m["labels"] for m in map(json.loads, out.splitlines()) if m["type"] == "prediction"]
        seen[path.stem] = (classified, predictions, _final_status(out)["counters"]["samples"])
    assert seen["unsized"] == seen["whole"] and seen["whole"][2] == known_audio.size


def test_flac_from_a_pipe_is_one_clear_line(known_clip, checkpoint):
    cmd = " ".join(f"'{a}'" for a in streamd_command(_replay_args("-", checkpoint, "flacpipe")))
    proc = subprocess.run(
        ["bash", "-c", f"cat '{known_clip}' 2>/dev/null | {cmd}"],  # cat may meet a closed pipe
        capture_output=True, text=True, timeout=60, env=streamd_env(),
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "streamd: error: <stdin>: unsupported or unreadable audio file "
        "(Error : flac decoder lost sync.; from a pipe or device use WAV, AIFF, AU or OGG)"
    ]


def test_mp3_from_a_pipe_is_refused_before_any_result(tmp_path, known_audio, checkpoint):
    """libsndfile seeks while it decodes MP3: from a pipe that failed mid-file, after results."""
    mp3 = tmp_path / "clip.mp3"
    sf.write(mp3, known_audio, 16000, format="MP3")
    cmd = " ".join(f"'{a}'" for a in streamd_command(_replay_args("-", checkpoint, "mp3pipe")))
    proc = subprocess.run(
        ["bash", "-c", f"cat '{mp3}' 2>/dev/null | {cmd}"],
        capture_output=True, text=True, timeout=60, env=streamd_env(),
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "streamd: error: <stdin>: MP3 cannot be read from a pipe; use WAV, AIFF, AU or OGG"
    ]
    assert '"type":"prediction"' not in proc.stdout
    assert run_streamd(*_replay_args(mp3, checkpoint, "mp3file"), timeout=60).returncode == 0  # a file plays


@pytest.mark.parametrize("command", ["replay", "classify"])
def test_standard_input_named_twice_is_refused_before_reading(command, wav, checkpoint):
    result = run_streamd(command, "-", "-", "--checkpoint", checkpoint, timeout=60)
    assert_clean_error(result, "named more than once", exit_code=2)


def test_a_writer_that_stalls_gets_a_stalled_status(tmp_path, wav, checkpoint):
    fifo = tmp_path / "slow.wav"
    os.mkfifo(fifo)
    data = wav.read_bytes()
    args = _replay_args(fifo, checkpoint, "stall")

    def write() -> None:
        with open(fifo, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(4.5)  # longer than the 3 s watchdog
            f.write(data[len(data) // 2 :])

    thread = threading.Thread(target=write)
    thread.start()
    result = run_streamd(*args, timeout=60)
    thread.join(10)
    assert result.returncode == 0, result.describe()
    statuses = [json.loads(x) for x in result.stdout.splitlines() if '"status"' in x]
    stalled = [s for s in statuses if s["state"] == "stalled"]
    assert stalled and "no audio from" in stalled[0]["message"] and "slow.wav" in stalled[0]["message"]
    assert statuses[-1]["state"] == "finished" and statuses[-1]["counters"]["samples"] == 80000


# -- 2. non-UTF-8 names ----------------------------------------------------------------------------------


def test_non_utf8_names_replay_and_classify(tmp_path, known_clip, checkpoint, capsys):
    odd = os.fsdecode(bytes(tmp_path) + b"/\xff\xfe.flac")
    shutil.copyfile(known_clip, odd)
    code = main(_replay_args(odd, checkpoint, "odd"))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert _final_status(out)["counters"]["samples"] == 80000
    missing = os.fsdecode(bytes(tmp_path) + b"/\xff-missing.wav")
    code = main(["classify", odd, missing, str(known_clip), "--checkpoint", str(checkpoint), "--json"])
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert [r["file"] for r in rows] == [f"{tmp_path}/\\xff\\xfe.flac", str(known_clip)]  # the good one too
    assert rows[0]["labels"] == rows[1]["labels"]
    assert f"streamd: error: {tmp_path}/\\xff-missing.wav: no such file" in err.splitlines()


# -- 4. crafted checkpoint metadata ----------------------------------------------------------------------


def _crafted(tmp_path: Path, checkpoint: Path, edit) -> Path:
    with safe_open(str(checkpoint), framework="pt") as f:
        meta = dict(f.metadata())
    info = json.loads(meta["streamd"])
    edit(info)
    meta["streamd"] = json.dumps(info)
    out = tmp_path / "crafted.safetensors"
    save_file(load_file(str(checkpoint)), str(out), metadata=meta)
    return out


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda i: i["labels"].__setitem__(3, "x" * 5000), "labels[3]: 5000 characters (at most 256)"),
        (lambda i: i["normalization"].__setitem__("target_frames", 10**9), "normalization.target_frames"),
        (lambda i: i["features"].__setitem__("sample_rate", 0), "features.sample_rate"),
        (lambda i: i["normalization"].__setitem__("std", 0.0), "normalization.std"),
        (lambda i: i["config"].__setitem__("channels", [8, 16, 32, 10**9]), "config.channels[3]"),
        (lambda i: i["labels"].__setitem__(1, i["labels"][0]), "appears twice"),
    ],
)
@pytest.mark.parametrize("command", ["replay", "classify"])
def test_crafted_metadata_is_refused_at_load(tmp_path, checkpoint, known_clip, capsys, edit, field, command):
    bad = _crafted(tmp_path, checkpoint, edit)
    if command == "replay":
        code = main(_replay_args(known_clip, bad, f"crafted-{command}"))
    else:
        code = main(["classify", str(known_clip), "--checkpoint", str(bad)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"streamd: error: {bad}: invalid metadata: " + err.split("metadata: ")[1].strip()
    ]
    assert field in err


# -- 6. bounds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "toml", "message"),
    [
        (["--window", "1000"], "", "command line: windows.window_s must be at most 60, got 1000.0"),
        ([], "[capture]\nring_s = 1e12\n", "capture.ring_s must be at most 600, got 1000000000000.0"),
        ([], "[events]\nthreshold = 7\n", "events.threshold must be a score in [0, 1], got 7"),
        (
            [],
            "[events.thresholds]\ndgo = 0.5\n",
            "events.thresholds: unknown label 'dgo' (did you mean dog?)",
        ),
        ([], '[events]\nallow = ["rooster", "chainsw"]\n', "events.allow: unknown label 'chainsw'"),
        ([], '[events]\ndeny = ["zzz"]\n', "events.deny: unknown label 'zzz' (the model has 50 labels)"),
        (
            [],
            '[mqtt]\nurl = "mqtt://127.0.0.1:1"\nbinary_sensors = ["dgo"]\n',  # checked while MQTT is on
            "mqtt.binary_sensors: unknown label 'dgo' (did you mean dog?)",
        ),
        (
            [],
            '[clips]\ndir = "/nonexistent/clips"\nlabels = ["notalabel"]\n',  # refused before the folder is
            "clips.labels: unknown label 'notalabel'",
        ),
        (["--mqtt", ""], "", "--mqtt is empty (leave the option out, or give 'off'"),
        (["--metrics", " "], "", "--metrics is empty"),
        (["--save-clips", ""], "", "--save-clips is empty"),
        (["--stream-prefix", ""], "", "--stream-prefix '' has no letter or digit"),
        (["--mqtt", "mqtt://[::1"], "", "--mqtt: Invalid IPv6 URL in 'mqtt://[::1'"),
    ],
)
def test_sizes_and_labels_are_bounded(tmp_path, checkpoint, known_clip, capsys, extra, toml, message):
    args = _replay_args(known_clip, checkpoint, "bounds") + extra
    if toml:
        (tmp_path / "c.toml").write_text(toml)
        args += ["--config", str(tmp_path / "c.toml")]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert '"prediction"' not in out


# -- 7. the small ones -------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay_s", [0.15, 0.3, 0.45, 0.6, 0.8, 1.2])
def test_ctrl_c_during_start_up_is_not_a_traceback(known_clip, checkpoint, delay_s):
    """Ctrl-C at any point of start-up (the command's imports, numpy's included: an import cut in half
    once surfaced later as a read error with exit 1) is exit 130 without a traceback; once the pipeline
    has started (its "starting" status is out), a clean stop."""
    # --speed 1: the 5-s clip keeps the command running past the last delay (at max speed a quick start-up
    # and exit finish the whole replay within 1.2 s, before the signal is sent)
    proc = StreamdProcess(_replay_args(known_clip, checkpoint, f"ctrlc{delay_s}", speed="1")).start()
    with proc:
        time.sleep(delay_s)  # python has started; the command's modules (numpy, torch) are importing
        proc.send_signal(signal.SIGINT)
        result = proc.wait(30)
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr, result.describe()
    assert "error" not in result.stderr, result.describe()
    if '"starting"' in result.stdout:  # start-up was over (a fast machine): the run stops cleanly
        assert result.returncode == 0 and _final_status(result.stdout)["state"] == "stopped", (
            result.describe()
        )
    else:
        assert result.returncode == 130, result.describe()


@pytest.fixture(scope="module")
def own_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two class folders of three real ESC-50 clips each."""
    from support.paths import ESC50, esc50_rows

    root = tmp_path_factory.mktemp("own") / "data"
    for category in ("dog", "rain"):
        (root / category).mkdir(parents=True)
        for row in [r for r in esc50_rows() if r["category"] == category][:3]:
            shutil.copy(ESC50 / "audio" / row["filename"], root / category / row["filename"])
    return root


@pytest.mark.parametrize("delay_s", [0.3, 0.6, 0.9, 1.2, 1.6, 2.2])
def test_ctrl_c_while_training_starts_is_exit_130_without_an_error(own_data, tmp_path, delay_s):
    """Ctrl-C while ``train`` imports torch (which, cut in half, failed later as an attribute error or
    aborted the process) or builds its data and model (torch may turn the interrupt into an error of its
    own) is exit 130 and no error line."""
    out = tmp_path / "out"
    args = ["train", "--data", str(own_data), "--epochs", "3", "--no-progress", "--out", str(out)]
    proc = StreamdProcess(args).start()
    with proc:
        time.sleep(delay_s)
        proc.send_signal(signal.SIGINT)
        result = proc.wait(60)
    assert result.returncode == 130, result.describe()
    assert "Traceback" not in result.stderr and "error" not in result.stderr, result.describe()


def test_a_busy_port_is_reported_before_the_model_loads(endpoint, known_clip, tmp_path):
    holder = zmq.Context().socket(zmq.PUB)
    holder.bind(endpoint)
    try:  # the checkpoint does not exist: the port error wins because the port is bound first
        result = run_streamd(
            "replay", known_clip, "--checkpoint", tmp_path / "none.safetensors",
            "--publish", endpoint, "--no-dashboard", timeout=60,
        )  # fmt: skip
    finally:
        holder.close(0)
    assert_clean_error(result, f"cannot bind {endpoint}: address already in use", exit_code=2)


def test_a_blank_device_name_is_one_clear_line():
    result = run_streamd("run", "--device", "  ", "--no-dashboard", timeout=60)
    assert_clean_error(result, "--device: empty device name; use 'mic'", exit_code=2)


def test_timeline_symbols_are_distinct_and_explained():
    labels = ["cat", "clock_tick", "crying_baby", "crackling_fire", "dog", "cat"]
    symbols = timeline_symbols(labels)
    assert len(set(symbols.values())) == len(symbols) == 5
    assert symbols["cat"] == "c" and symbols["clock_tick"] == "C" and symbols["dog"] == "d"
    assert legend(symbols) == "c=cat C=clock_tick 0=crying_baby 1=crackling_fire d=dog"
