"""Losses to a slow subscriber are counted exactly, by the subscriber, from the gaps in ``seq``.

ZeroMQ drops messages for a subscriber that is more than its high-water mark behind, without telling the
publisher. Here a real ``streamd listen`` with a one-message high-water mark is paused (SIGSTOP) during a
flat-out replay whose publisher keeps one message per subscriber; what it reports missing (one stderr line
per gap, a total at exit) must be exactly what the daemon sent (its own ``--json`` record, every message
with its ``seq``) and the listener never printed.
"""

from __future__ import annotations

import itertools
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.paths import esc10_clips
from support.process import StreamdProcess, assert_no_traceback

RATE = 16000
START_TIMEOUT_S = 180.0  # model load on a busy machine
PAUSED_FOR = 500  # messages the daemon sends while the listener is stopped


@pytest.fixture(scope="module")
def minute_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One minute of real sound: 12 ESC-10 clips one after another."""
    audio = np.concatenate([sf.read(p, dtype="float32")[0] for p in esc10_clips(12)])
    path = tmp_path_factory.mktemp("minute") / "one_minute.wav"
    sf.write(path, audio, RATE, subtype="PCM_16")
    return path


def _missing_runs(seqs: list[int]) -> list[tuple[int, int]]:
    """The runs of numbers absent between the first and last of ``seqs`` (sorted, distinct)."""
    return [(a + 1, b - 1) for a, b in itertools.pairwise(seqs) if b > a + 1]


def test_a_paused_subscriber_counts_exactly_the_messages_it_missed(
    minute_recording: Path, checkpoint: Path, tmp_path: Path
) -> None:
    endpoint = f"ipc://{tmp_path / 'pub.sock'}"  # small kernel buffers: the high-water marks decide
    config = tmp_path / "daemon.toml"
    config.write_text("[publish]\nsndhwm = 1\n")
    listener = StreamdProcess(["listen", "--connect", endpoint, "--hwm", "1", "--seconds", "300"])
    daemon = StreamdProcess(
        [
            *("replay", minute_recording, "--checkpoint", checkpoint, "--config", config),
            *("--publish", endpoint, "--speed", "max", "--hop", "0.05", "--top-k", "50"),
            *("--no-dashboard", "--json", "--wait-subscriber", "180"),
        ]
    )
    with listener, daemon:
        listener.start()
        time.sleep(1.0)  # the listener is in its reconnect loop before the publisher binds
        daemon.start()
        heard_some = listener.wait_for(lambda p: p.stdout_text().count("\n") >= 20, START_TIMEOUT_S)
        assert heard_some, daemon.stderr_text() + listener.stderr_text()
        listener.send_signal(signal.SIGSTOP)  # stops reading mid-stream ...
        sent_before = daemon.stdout_text().count("\n")
        # ... while the daemon sends far more than the high-water marks and kernel buffers can keep
        daemon.wait_for(lambda p: p.stdout_text().count("\n") >= sent_before + PAUSED_FOR, 120)
        listener.send_signal(signal.SIGCONT)
        result = daemon.wait(180)
        time.sleep(1.0)  # the listener catches up with what ZeroMQ kept for it
        listener.send_signal(signal.SIGINT)
        heard = listener.wait(10)

    assert result.returncode == 0 and heard.returncode == 0, result.describe() + heard.describe()
    assert_no_traceback(result)
    assert_no_traceback(heard)
    published = result.json_lines()
    assert [m["seq"] for m in published] == list(range(len(published)))  # one stream, no holes
    assert "loses messages without the publisher knowing" in published[0]["message"]
    final = published[-1]
    assert final["state"] == "finished" and final["counters"]["publish_dropped"] == 0

    got = heard.json_lines()
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(set(seqs))  # in order, never twice
    assert got == [published[s] for s in seqs]  # what arrived is what was sent
    # A loss is seen when a later message arrives: messages lost after the last one heard (the listener
    # still catching up when the daemon closed) are the one loss no subscriber can see, so they are
    # counted apart; everything before the last message heard is accounted for exactly.
    tail = len(published) - 1 - seqs[-1]
    runs = _missing_runs(seqs)
    missed = sum(b - a + 1 for a, b in runs)
    assert missed > 0, "the pause caused no loss: the test proves nothing"
    assert len(got) + missed + tail == len(published)

    stream = published[0]["stream"]
    reported = [
        (int(m[1]), int(m[2] or m[1]))
        for m in re.finditer(r"missed \d+ message\(s\) of stream \S+ \(seq (\d+)(?:-(\d+))?\)", heard.stderr)
    ]
    assert reported == runs, heard.stderr
    assert f"of stream {stream} " in heard.stderr
    total = f"streamd listen: missed {missed} message(s) in {len(runs)} gap(s)"
    assert heard.stderr_lines[-1] == total, heard.stderr
    print(f"published {len(published)}, heard {len(got)}, missed {missed} in {len(runs)} gap(s)")
