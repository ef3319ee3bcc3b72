"""Engine: batched equals one-by-one, queue policies count every drop, recurrent state kept per stream."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch

from audio_core.front_end import front_end
from audio_core.windows import ColumnPlan, Window
from streamd.engine import WARM_UP_CALLS, Engine
from streamd.job_queue import Job, JobQueue
from streamd.model_loading import load_model
from streamd.model_runner import ModelRunner, intra_op_threads, model_threads, score_one_by_one


def _window(features: torch.Tensor, index: int = 0) -> Window:
    return Window(index, float(index), float(index) + 5.0, features, 0, -20.0)


@pytest.fixture(scope="module")
def loaded(small_checkpoint):
    return load_model(small_checkpoint, compute="cpu", precision="fp32")


@pytest.fixture(scope="module")
def real_windows(loaded, clips, esc50):
    """Five 2-s fbank windows of real clips."""
    return esc50.fbank_windows(clips, loaded.info.features, (0, 24000), 5)


def test_batched_scores_equal_one_by_one(loaded, real_windows):
    runner = ModelRunner(loaded)
    batched = runner.score_windows(real_windows)
    assert batched.shape == (5, 50)
    torch.testing.assert_close(batched, score_one_by_one(runner, real_windows), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batched.sum(dim=1), torch.ones(5))  # softmax: single-label model


def test_int8_scores_a_window_the_same_in_any_batch(real_windows):
    """Dynamic int8 scales activations per call: a batch is scored window by window, so classify's
    batches and the daemon's single windows give the same scores (the shipped default and AST)."""
    from streamd.model_loading import load_named_model

    for name in ("default", "ast"):
        runner = ModelRunner(load_named_model(name, compute="cpu", precision="int8"))
        louder = [w + 4.0 for w in real_windows]  # louder windows beside the first: a wider activation range
        batched = runner.score_windows([real_windows[0], *louder])
        assert torch.equal(batched[:1], runner.score_windows(real_windows[:1])), name


def test_scores_apply_the_models_normalisation(loaded, real_windows):
    runner = ModelRunner(loaded)
    norm = loaded.info.normalization
    with torch.inference_mode():
        logits = loaded.model(norm.apply(torch.stack(real_windows)))
    torch.testing.assert_close(
        runner.score_windows(real_windows), torch.softmax(logits, -1), atol=1e-6, rtol=0
    )


def test_bf16_autocast_stays_close_to_fp32(small_checkpoint, real_windows):
    fp32 = ModelRunner(load_model(small_checkpoint, compute="cpu", precision="fp32")).score_windows(
        real_windows
    )
    bf16 = ModelRunner(load_model(small_checkpoint, compute="cpu", precision="bf16")).score_windows(
        real_windows
    )
    assert bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max() < 0.02


def _job(stream: int, index: int, features: torch.Tensor | None = None) -> Job:
    return Job(stream, _window(torch.zeros(1, 1) if features is None else features, index), time.monotonic())


def test_drop_oldest_returns_what_it_dropped():
    q = JobQueue(2, "drop_oldest")
    assert q.put(_job(0, 0)) is None and q.put(_job(0, 1)) is None
    dropped = q.put(_job(0, 2))
    assert dropped is not None and dropped.window.index == 0
    assert [j.window.index for j in q.get_batch(10, 0.0)] == [1, 2]


def test_block_waits_for_the_consumer():
    q = JobQueue(1, "block")
    q.put(_job(0, 0))
    done = threading.Event()

    def producer() -> None:
        q.put(_job(0, 1))
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    assert not done.wait(0.2)  # the queue is full: the producer waits
    assert [j.window.index for j in q.get_batch(1, 0.0)] == [0]
    assert done.wait(2.0)
    q.close()
    assert [j.window.index for j in q.get_batch(5, 0.0)] == [1]
    assert q.get_batch(5, 0.0) is None  # closed and drained


def test_wait_for_room():
    q = JobQueue(1, "block")
    assert q.wait_for_room(0.0)
    q.put(_job(0, 0))
    started = time.monotonic()
    assert not q.wait_for_room(0.05) and time.monotonic() - started >= 0.04
    threading.Timer(0.05, lambda: q.get_batch(1, 0.0)).start()
    assert q.wait_for_room(2.0)


def test_abandon_releases_a_blocked_producer():
    q = JobQueue(1, "block")
    q.put(_job(0, 0))
    result: list = []
    thread = threading.Thread(target=lambda: result.append(q.put(_job(0, 1))), daemon=True)
    thread.start()
    time.sleep(0.05)
    left = q.abandon()
    thread.join(2.0)
    assert [j.window.index for j in left] == [0] and result[0].window.index == 1


def test_get_batch_fills_a_deep_batch_from_a_trickling_producer():
    q = JobQueue(8, "block")

    def trickle(n: int, every_s: float) -> None:
        for k in range(n):
            q.put(_job(0, k))
            time.sleep(every_s)

    threading.Thread(target=trickle, args=(8, 0.005), daemon=True).start()
    started = time.monotonic()
    batch = q.get_batch(20, 1.0, fill_s=5.0)  # waits for a full queue, not for the 5 s
    assert [j.window.index for j in batch] == list(range(8)) and time.monotonic() - started < 4.0
    threading.Thread(target=trickle, args=(3, 0.005), daemon=True).start()
    assert len(q.get_batch(20, 1.0)) < 3  # without fill: whatever is there at once
    time.sleep(0.1)
    q.get_batch(20, 0.0)
    threading.Thread(target=trickle, args=(2, 0.3), daemon=True).start()
    started = time.monotonic()
    assert len(q.get_batch(20, 1.0, fill_s=0.1)) == 1 and time.monotonic() - started < 0.3  # gives up
    time.sleep(0.4)
    assert len(q.get_batch(20, 0.0)) == 1  # the trickle's second job
    q.put(_job(0, 9))
    threading.Timer(0.1, q.close).start()
    started = time.monotonic()
    assert len(q.get_batch(20, 1.0, fill_s=5.0)) == 1 and time.monotonic() - started < 4.0  # the end


def test_bad_queue_settings():
    with pytest.raises(ValueError):
        JobQueue(0, "block")
    with pytest.raises(ValueError):
        JobQueue(4, "newest")


def _run_engine(loaded, jobs, **kwargs):
    results: list[tuple[Job, torch.Tensor]] = []

    def on_results(batch, scores):
        results.extend(zip(batch, scores, strict=True))

    engine = Engine(loaded, on_results, **kwargs)
    for job in jobs:
        engine.submit(job)
    engine.start()
    engine.close()
    assert engine.join(10.0)
    return engine, results


def test_engine_classifies_every_window_in_order_in_batches(loaded, real_windows):
    jobs = [_job(i % 2, i, f) for i, f in enumerate(real_windows)]
    engine, results = _run_engine(loaded, jobs, queue_size=8, max_batch=4, policy="block")
    assert [j.window.index for j, _ in results] == [0, 1, 2, 3, 4]
    assert engine.batches == 2  # 4 + 1: everything was queued before the worker started
    expected = score_one_by_one(ModelRunner(loaded), real_windows)
    torch.testing.assert_close(torch.stack([s for _, s in results]), expected, atol=1e-5, rtol=1e-4)
    assert engine.counters(0)["windows"] == 3 and engine.counters(1)["windows"] == 2
    assert engine.counters(0)["dropped_windows"] == 0


def test_drop_oldest_under_overload_counts_drops_per_stream(loaded, real_windows):
    jobs = [_job(i % 2, i, real_windows[i % 5]) for i in range(10)]
    engine, results = _run_engine(loaded, jobs, queue_size=3, max_batch=8, policy="drop_oldest")
    assert [j.window.index for j, _ in results] == [7, 8, 9]  # the newest survive
    assert engine.counters(0)["dropped_windows"] == 4 and engine.counters(1)["dropped_windows"] == 3


def test_a_failing_model_is_counted_and_the_engine_goes_on(loaded, real_windows):
    bad = [_job(0, 0, torch.zeros(3, 7))]  # wrong number of mel bins
    good = [_job(0, 1, real_windows[0])]
    engine, results = _run_engine(loaded, bad + good, queue_size=4, max_batch=1, policy="block")
    assert engine.model_errors == 1 and "RuntimeError" in (engine.last_error or "")
    assert [j.window.index for j, _ in results] == [1]


def test_non_finite_scores_are_model_errors_and_logged(loaded, real_windows, caplog):
    poisoned = real_windows[1].clone()
    poisoned[10, 3] = float("nan")
    jobs = [_job(0, 0, real_windows[0]), _job(0, 1, poisoned), _job(0, 2, real_windows[2])]
    with caplog.at_level("WARNING", logger="streamd.engine"):
        engine, results = _run_engine(
            loaded, jobs, queue_size=4, max_batch=4, policy="block", stream_names=["s"]
        )
    assert [j.window.index for j, _ in results] == [0, 2]  # the batch's good windows still go out
    assert engine.model_errors == 1 and engine.counters(0)["windows"] == 2
    assert any("stream s window 1 (1-6 s): non-finite scores" in r.getMessage() for r in caplog.records)


def test_a_failing_result_handler_stops_the_engine_visibly(loaded, real_windows):
    def broken(jobs, scores):
        raise RuntimeError("boom")

    engine = Engine(loaded, broken, queue_size=4, max_batch=1, policy="block")
    for i in range(3):
        engine.submit(_job(0, i, real_windows[i]))
    engine.start()
    assert engine.join(5.0)
    assert engine.failure == "engine stopped: RuntimeError: boom"
    assert engine.counters(0)["dropped_windows"] == 2  # what was still queued is counted


def test_recurrent_streams_keep_their_own_state_and_share_model_calls(tiny_recurrent, esc50):
    cfg = tiny_recurrent.info.features
    waves = [esc50.read_mono(p)[:16000] for p in esc50.clips(2)]
    columns = []
    for wave in waves:
        front = front_end(ColumnPlan(tiny_recurrent.column_frames, cfg))
        columns.append(front.accept(wave) + front.finish())
    jobs = [Job(s, columns[s][k], time.monotonic()) for k in range(len(columns[0])) for s in (0, 1)]
    engine, results = _run_engine(tiny_recurrent, jobs, queue_size=1000, max_batch=64, policy="block")
    assert engine.batches == len(columns[0])  # one call per step, both streams in it
    norm = tiny_recurrent.info.normalization
    for s in (0, 1):
        got = torch.stack([score for job, score in results if job.stream == s])
        frames = torch.cat([c.features for c in columns[s]])[None]
        with torch.inference_mode():
            reference = torch.softmax(tiny_recurrent.model.forward_steps(norm.apply(frames))[0], -1)
        torch.testing.assert_close(got, reference, atol=1e-6, rtol=1e-5)
        assert [job.window.index for job, _ in results if job.stream == s] == list(range(len(columns[s])))


def test_rounds_put_one_column_per_stream_in_each_call():
    jobs = [_job(s, k) for k, s in enumerate([0, 0, 1, 0, 2, 1])]
    rounds = Engine._rounds(jobs)
    assert [[(j.stream, j.window.index) for j in r] for r in rounds] == [
        [(0, 0), (1, 2), (2, 4)],
        [(0, 1), (1, 5)],
        [(0, 3)],
    ]
    assert np.all([len({j.stream for j in r}) == len(r) for r in rounds])


@pytest.mark.cuda
def test_cuda_scores_equal_cpu_scores(small_checkpoint, real_windows):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = ModelRunner(load_model(small_checkpoint, compute="cpu", precision="fp32")).score_windows(
        real_windows
    )
    gpu_loaded = load_model(small_checkpoint, compute="cuda")
    assert gpu_loaded.device.type == "cuda"
    gpu = ModelRunner(gpu_loaded).score_windows(real_windows)
    assert gpu.device.type == "cpu"
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-3)
    bf16 = ModelRunner(load_model(small_checkpoint, compute="cuda", precision="bf16")).score_windows(
        real_windows
    )
    assert (bf16 - cpu).abs().max() < 0.02


def test_model_workers_are_the_cores_and_one_call_leaves_a_core_for_the_pipeline() -> None:
    cpu = torch.device("cpu")
    assert model_threads(3, cpu) == 3  # an explicit request wins
    assert model_threads(0, cpu) == max(1, min(torch.get_num_threads(), len(os.sched_getaffinity(0))))
    assert model_threads(0, torch.device("cuda")) == torch.get_num_threads()
    assert [intra_op_threads(w) for w in (1, 2, 3, 16)] == [1, 1, 2, 15]


def test_engine_with_two_threads_splits_batches_and_equals_one_by_one(loaded, real_windows, monkeypatch):
    calls: list[tuple[str, int]] = []
    score_windows = ModelRunner.score_windows

    def spy(runner, features):
        calls.append((threading.current_thread().name, len(features)))
        return score_windows(runner, features)

    monkeypatch.setattr(ModelRunner, "score_windows", spy)
    before = torch.get_num_threads()
    jobs = [_job(0, i, f) for i, f in enumerate(real_windows)]
    engine, results = _run_engine(loaded, jobs, queue_size=8, max_batch=8, policy="block", threads=2)
    assert [j.window.index for j, _ in results] == [0, 1, 2, 3, 4]
    assert engine.batches == 1  # one batch of five windows, scored as two chunks side by side
    assert sorted(calls) == [("streamd-engine", 1)] * 3 + [("streamd-model-1", 1)] * 2  # one call each
    expected = score_one_by_one(ModelRunner(loaded), real_windows)
    assert torch.equal(torch.stack([s for _, s in results]), expected)  # bit for bit: no batch effects
    assert not [t for t in threading.enumerate() if t.name.startswith("streamd-model")]  # helpers gone
    assert torch.get_num_threads() == before  # the engine gave back the setting it changed


def test_warm_up_calls_the_model_on_every_worker_before_the_first_window(loaded, monkeypatch):
    calls: list[str] = []
    score_windows = ModelRunner.score_windows

    def spy(runner, features):
        calls.append(threading.current_thread().name)
        return score_windows(runner, features)

    monkeypatch.setattr(ModelRunner, "score_windows", spy)
    engine = Engine(loaded, lambda jobs, scores: None, threads=2)
    engine.warm_up(torch.zeros(498, loaded.info.features.num_mel_bins))
    assert not calls and not engine.warmed.is_set()  # the worker warms itself, in its own thread
    engine.start()
    assert engine.warmed.wait(10.0)
    assert sorted(calls) == ["streamd-engine"] * WARM_UP_CALLS + ["streamd-model-1"] * WARM_UP_CALLS
    assert engine.warm_up_calls == len(calls)
    engine.close()
    assert engine.join(10.0) and engine.batches == 0  # warming published nothing
    assert not [t for t in threading.enumerate() if t.name.startswith("streamd-model")]


def test_a_failing_warm_up_is_logged_and_the_engine_goes_on(loaded, real_windows, caplog):
    engine = Engine(loaded, lambda jobs, scores: None)
    engine.warm_up(torch.zeros(3, 5))  # not a shape the model takes
    engine.start()
    assert engine.warmed.wait(10.0)
    engine.submit(_job(0, 0, real_windows[0]))
    engine.close()
    assert engine.join(10.0) and engine.batches == 1 and engine.failure is None
    assert "model warm-up failed" in caplog.text
