"""Stages start in order and stop in reverse, each joined with a timeout; a stuck one never hangs shutdown."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soundfile as sf

from streamd.config import DaemonConfig, with_windows
from streamd.daemon import Daemon
from streamd.file_source import FileSource
from streamd.model_loading import LoadedModel, load_model
from streamd.publisher import Publisher
from streamd.stages import Stages, ThreadStage


@pytest.fixture(scope="module")
def loaded(small_checkpoint) -> LoadedModel:
    return load_model(small_checkpoint, compute="cpu")


@pytest.fixture(scope="module")
def long_wave(esc50) -> np.ndarray:
    return np.concatenate([esc50.read_mono(p) for p in esc50.clips(2)])


class _Worker(ThreadStage):
    """A real thread that ends when asked, or (``stubborn``) only when ``release`` is set."""

    def __init__(self, name: str, log: list[str], stubborn: bool = False) -> None:
        super().__init__()
        self.name = name
        self.log = log
        self.stubborn = stubborn
        self.asked = threading.Event()
        self.release = threading.Event()

    def _run(self) -> None:
        self.asked.wait()
        if self.stubborn:
            self.release.wait()
        self.log.append(f"ended {self.name}")

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        self.asked.set()


def test_stages_stop_in_reverse_order_of_start():
    log: list[str] = []
    stages = Stages(join_timeout_s=2.0)
    for name in ("first", "second", "third"):
        stages.start(_Worker(name, log))
    assert stages.stop_all() == []
    assert log == ["stop third", "ended third", "stop second", "ended second", "stop first", "ended first"]
    assert stages.started == []


def test_a_stage_that_refuses_to_stop_is_reported_and_the_others_still_stop():
    log: list[str] = []
    stages = Stages(join_timeout_s=0.3)
    first, stuck, last = _Worker("first", log), _Worker("stuck", log, stubborn=True), _Worker("last", log)
    for stage in (first, stuck, last):
        stages.start(stage)
    t0 = time.monotonic()
    report = stages.stop_all()
    took = time.monotonic() - t0
    assert len(report) == 1 and report[0].startswith("the stuck stage did not stop within 0.3")
    assert took < 2.0  # bounded by the one timeout, not by the stuck thread
    assert log == ["stop last", "ended last", "stop stuck", "stop first", "ended first"]
    stuck.release.set()
    assert stuck.join(2.0)


def test_a_daemon_whose_feature_thread_hangs_still_stops_and_says_which_stage(loaded, long_wave, tmp_path):
    """An integration's audio tap that never returns pins the feature thread: Ctrl-C still ends the run
    within about the join timeouts, every later stage still stops, and the stuck stage is named."""
    path = tmp_path / "scene.wav"
    sf.write(path, long_wave, 16000, subtype="FLOAT")
    publisher = Publisher("inproc://stages-stuck-tap")
    got: list[dict] = []
    publisher.add_sink(got.append)
    daemon = Daemon(with_windows(DaemonConfig(), 1.0, 0.5), [FileSource(path, speed=1.0)], loaded, publisher)
    entered, release = threading.Event(), threading.Event()

    def hanging_tap(stream: int, start: int, data: np.ndarray) -> None:
        if start > 0:  # the first block passes; the next one hangs
            entered.set()
            release.wait()

    daemon.audio_taps.append(hanging_tap)
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run_forever, args=(stop,))
    runner.start()
    try:
        assert entered.wait(10.0)
        stop.set()
        asked = time.monotonic()
        runner.join(10.0)
        assert not runner.is_alive() and time.monotonic() - asked < 4.0
        assert any(w.startswith("the features stage did not stop") for w in daemon.warnings)
        assert daemon.engine.join(0) and not daemon.results.alive  # the stages before it still stopped
        assert [m["state"] for m in got if m["type"] == "status"][-1] == "stopped"
    finally:
        release.set()
