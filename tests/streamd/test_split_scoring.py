"""SplitScorer: a batch scored in chunks on several threads equals scoring each window alone, in order."""

from __future__ import annotations

import itertools
import threading

import pytest
import torch

from streamd.model_loading import load_model
from streamd.model_runner import ModelRunner, score_one_by_one
from streamd.split_scoring import SplitScorer, chunk_bounds, chunk_threads


@pytest.fixture(scope="module")
def runner(small_checkpoint):
    return ModelRunner(load_model(small_checkpoint, compute="cpu", precision="fp32"))


@pytest.fixture(scope="module")
def real_windows(runner, clips, esc50):
    """Seven 2-s fbank windows of real clips."""
    return esc50.fbank_windows(clips, runner.info.features, (0, 16000, 32000), 7)


def test_chunk_bounds_cover_the_batch_in_order():
    assert chunk_bounds(5, 2) == [(0, 3), (3, 5)]
    assert chunk_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
    assert chunk_bounds(2, 4) == [(0, 1), (1, 2)]  # never an empty chunk
    assert chunk_bounds(1, 1) == [(0, 1)]
    for count in range(1, 12):
        for parts in range(1, 6):
            bounds = chunk_bounds(count, parts)
            assert bounds[0][0] == 0 and bounds[-1][1] == count
            assert all(a < b for a, b in bounds)
            assert all(b == c for (_, b), (c, _) in itertools.pairwise(bounds))
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1 and len(bounds) == min(count, parts)


@pytest.mark.parametrize("workers", [2, 3])
def test_split_batches_equal_each_window_scored_alone(runner, real_windows, workers):
    split = SplitScorer(runner.score_windows, workers)
    try:
        expected = score_one_by_one(runner, real_windows)
        for size in (1, 2, 5, 7):
            got = split(real_windows[:size])
            assert got.shape == (size, expected.shape[1])
            torch.testing.assert_close(got, expected[:size], atol=1e-5, rtol=1e-4)
    finally:
        split.close()


def test_per_window_scores_are_bit_for_bit_those_of_each_window_alone(runner, real_windows):
    expected = score_one_by_one(runner, real_windows)
    for workers in (1, 2):
        split = SplitScorer(runner.score_windows, workers, per_window=True)
        try:
            for size in (1, 3, 7):
                assert torch.equal(split(real_windows[:size]), expected[:size])
        finally:
            split.close()


_asked = threading.local()  # the torch threads this thread last asked for (torch's own count is global)


@pytest.fixture()
def record_thread_settings(monkeypatch):
    set_num_threads = torch.set_num_threads

    def record(n: int) -> None:
        _asked.threads = n
        set_num_threads(n)

    monkeypatch.setattr(torch, "set_num_threads", record)


def _mean_scorer(seen: list[tuple[str, int, int]]):
    lock = threading.Lock()

    def score_chunk(chunk: list[torch.Tensor]) -> torch.Tensor:
        with lock:
            seen.append((threading.current_thread().name, len(chunk), getattr(_asked, "threads", 0)))
        return torch.stack([w.mean().reshape(1) for w in chunk])

    return score_chunk


def test_chunks_run_on_helper_threads_with_their_share_of_torch_threads(real_windows, record_thread_settings):
    seen: list[tuple[str, int, int]] = []
    before = torch.get_num_threads()
    caller = threading.current_thread().name
    try:
        split = SplitScorer(_mean_scorer(seen), 2)
        out = split(real_windows[:5])
        assert torch.equal(out.flatten(), torch.stack([w.mean() for w in real_windows[:5]]))
        assert sorted(seen) == [(caller, 3, 1), ("streamd-model-1", 2, 1)]  # two chunks, one thread each
        seen.clear()
        split(real_windows[:1])  # a single window on the calling thread, all threads but one
        assert seen == [(caller, 1, 1)]
        split.close()
        seen.clear()
        split = SplitScorer(_mean_scorer(seen), 3)
        split(real_windows[:1])
        assert seen == [(caller, 1, 2)]
        seen.clear()
        split(real_windows[:2])
        first, helper = sorted(seen)  # two helpers wait on one task queue: either may take the chunk
        assert first == (caller, 1, 1) and helper[1:] == (1, 1)
        assert helper[0] in ("streamd-model-1", "streamd-model-2")
    finally:
        split.close()
        torch.set_num_threads(before)
    assert [chunk_threads(w, c) for w, c in ((2, 1), (2, 2), (3, 1), (3, 3), (16, 2), (16, 16))] == [
        1,
        1,
        2,
        1,
        7,
        1,
    ]


def test_a_failing_chunk_fails_the_batch_after_every_chunk_has_finished(real_windows):
    finished: list[int] = []
    slow_done = threading.Event()

    def score_chunk(chunk: list[torch.Tensor]) -> torch.Tensor:
        if threading.current_thread().name == "streamd-model-1":
            slow_done.wait(5.0)  # the helper's chunk is still running when the caller's fails
            finished.append(len(chunk))
            return torch.zeros(len(chunk), 1)
        raise RuntimeError("the model failed")

    split = SplitScorer(score_chunk, 2)
    timer = threading.Timer(0.3, slow_done.set)
    timer.start()
    try:
        with pytest.raises(RuntimeError, match="the model failed"):
            split(real_windows[:4])
        assert finished == [2]  # the other chunk was waited for before the error reached the caller
    finally:
        timer.cancel()
        split.close()


def test_close_stops_the_helpers_and_a_later_batch_starts_new_ones(real_windows):
    assert not [t for t in threading.enumerate() if t.name.startswith("streamd-model")]  # none left over
    seen: list[tuple[str, int, int]] = []
    before = torch.get_num_threads()
    split = SplitScorer(_mean_scorer(seen), 2)
    try:
        split(real_windows[:2])
        split.close(timeout=5.0)
        assert not [t for t in threading.enumerate() if t.name.startswith("streamd-model")]
        assert split(real_windows[:2]).shape == (2, 1)  # usable again (an engine restarted)
        helpers = [t for t in threading.enumerate() if t.name.startswith("streamd-model")]
        assert helpers and all(t.daemon for t in helpers)
    finally:
        split.close(timeout=5.0)
        torch.set_num_threads(before)


def test_one_worker_leaves_the_callers_torch_setting(real_windows):
    before = torch.get_num_threads()
    calls: list[int] = []

    def score_chunk(chunk: list[torch.Tensor]) -> torch.Tensor:
        calls.append(len(chunk))
        return torch.zeros(len(chunk), 3)

    torch.set_num_threads(2)
    try:
        split = SplitScorer(score_chunk, 1)
        assert split(real_windows[:4]).shape == (4, 3) and calls == [4]
        assert torch.get_num_threads() == 2
        split.close()
    finally:
        torch.set_num_threads(before)
