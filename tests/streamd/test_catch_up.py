"""Recurrent catch-up: pending columns of a stream run through one chunked call with the carried state,
equal to stepping column by column, one result per column."""

from __future__ import annotations

import time

import numpy as np
import torch

from audio_core.fbank import compute_fbank
from audio_core.front_end import front_end
from audio_core.windows import ColumnPlan
from models.checkpoint import save_checkpoint
from models.common import FeatureConfig, ModelInfo, Normalization
from models.streaming_mamba import StreamingMamba, StreamingMambaConfig
from streamd.catch_up import REPLAY_CATCH_UP_COLUMNS, catch_up_columns
from streamd.config import DaemonConfig
from streamd.daemon import Daemon
from streamd.engine import Engine
from streamd.file_source import FileSource
from streamd.job_queue import Job
from streamd.model_loading import load_model
from streamd.model_runner import ModelRunner
from streamd.publisher import Publisher


def _mamba_checkpoint(path, labels):
    torch.manual_seed(0)
    model = StreamingMamba(
        StreamingMambaConfig(num_classes=len(labels), num_mel_bins=64, d_model=32, n_layers=2)
    )
    config = {"num_classes": len(labels), "num_mel_bins": 64, "d_model": 32, "n_layers": 2}
    info = ModelInfo("streaming_mamba", config, labels, FeatureConfig(num_mel_bins=64))
    return save_checkpoint(path, model, info)


def _run_all(loaded, jobs: list[Job], **engine_args) -> tuple[Engine, list[tuple[Job, torch.Tensor]]]:
    """Queue every job, then let an engine classify them all; its results in order."""
    results: list[tuple[Job, torch.Tensor]] = []
    engine = Engine(
        loaded,
        lambda b, sc: results.extend(zip(b, sc, strict=True)),
        queue_size=1000,
        policy="block",
        **engine_args,
    )
    for job in jobs:
        engine.submit(job)
    engine.start()
    engine.close()
    assert engine.join(30.0)
    return engine, results


def test_catch_up_equals_stepping_one_result_per_column(tmp_path, esc50):
    loaded = load_model(
        _mamba_checkpoint(tmp_path / "m.safetensors", esc50.labels), compute="cpu", precision="fp32"
    )
    cfg = loaded.info.features
    columns = []
    for path, seconds in zip(esc50.clips(3), (2.0, 2.0, 1.0), strict=True):
        front = front_end(ColumnPlan(loaded.column_frames, cfg))
        columns.append(front.accept(esc50.read_mono(path)[: int(seconds * 16000)]) + front.finish())
    jobs = [Job(s, c, time.monotonic()) for s, cols in enumerate(columns) for c in cols]
    engine, results = _run_all(loaded, jobs, max_batch=64)
    assert engine.batches == 2  # streams 0 and 1 (same depth) share a call, stream 2 has its own
    runner = ModelRunner(loaded)
    for s, cols in enumerate(columns):
        got = [(job.window.index, score) for job, score in results if job.stream == s]
        assert [i for i, _ in got] == [c.index for c in cols]
        state = runner.init_state()
        for (_, score), column in zip(got, cols, strict=True):
            step, (state,) = runner.score_columns([column.features], [state])
            assert float((score - step[0]).abs().max()) <= 1e-4
        assert all(torch.allclose(state[k], engine._states[s][k], atol=1e-4) for k in state)


@torch.inference_mode()
def test_forward_chunk_equals_steps_from_any_state(esc50):
    torch.manual_seed(1)
    model = StreamingMamba(StreamingMambaConfig(num_mel_bins=64, d_model=48, n_layers=3)).eval()
    wave = np.concatenate([esc50.read_mono(p) for p in esc50.clips(2)])
    x = Normalization().apply(compute_fbank(wave, FeatureConfig(num_mel_bins=64)))[None, : 16 * 40]
    state = model.init_state(1)
    steps = []
    for i in range(40):
        logits, state = model.step(x[:, 16 * i : 16 * (i + 1)], state)
        steps.append(logits)
    chunked_state = model.init_state(1)
    outs = []
    for a, b in ((0, 1), (1, 9), (9, 40)):
        out, chunked_state = model.forward_chunk(x[:, 16 * a : 16 * b], chunked_state)
        outs.append(out)
    assert float((torch.cat(outs, 1) - torch.stack(steps, 1)).abs().max()) <= 1e-4
    assert all(float((state[k] - chunked_state[k]).abs().max()) <= 1e-4 for k in state)


def test_replay_catches_up_deeper_than_live(tmp_path, esc50, small_checkpoint):
    loaded = load_model(_mamba_checkpoint(tmp_path / "m.safetensors", esc50.labels), compute="cpu")
    assert catch_up_columns(loaded, 8, 0, "block") == REPLAY_CATCH_UP_COLUMNS
    assert catch_up_columns(loaded, 8, 0, "drop_oldest") == 8  # live: a stall leaves no long backlog
    assert catch_up_columns(loaded, 8, 5, "block") == 1  # an explicit queue size is kept as it is
    windowed = load_model(small_checkpoint, compute="cpu")
    assert catch_up_columns(windowed, 8, 0, "block") == 1
    daemon = Daemon(
        DaemonConfig(), [FileSource(esc50.clips(1)[0], speed=None)], loaded, Publisher("inproc://cu")
    )
    assert daemon.engine.take == 8 * REPLAY_CATCH_UP_COLUMNS
    assert daemon.engine.queue.maxsize == REPLAY_CATCH_UP_COLUMNS
    assert daemon.engine.fill_s > 0  # replay waits for a deep chunk
    live = Daemon(
        DaemonConfig(), [FileSource(esc50.clips(1)[0], speed=1.0)], loaded, Publisher("inproc://cu2")
    )
    assert live.engine.fill_s == 0.0  # paced: each column goes as soon as it is there


def test_one_call_takes_up_to_the_catch_up_depth_and_equals_stepping(tmp_path, esc50):
    loaded = load_model(
        _mamba_checkpoint(tmp_path / "m.safetensors", esc50.labels), compute="cpu", precision="fp32"
    )
    front = front_end(ColumnPlan(loaded.column_frames, loaded.info.features))
    wave = np.concatenate([esc50.read_mono(p) for p in esc50.clips(4)])[: 16 * 16000]
    columns = front.accept(wave) + front.finish()
    assert len(columns) == 99  # whole columns of 16 s (1598 frames)
    jobs = [Job(0, column, time.monotonic()) for column in columns]
    engine, results = _run_all(loaded, jobs, max_batch=1, columns_per_stream=64)
    assert engine.batches == 2  # 64 columns, then the other 35
    assert [job.window.index for job, _ in results] == [c.index for c in columns]
    runner = ModelRunner(loaded)
    state = runner.init_state()
    for (_, score), column in zip(results, columns, strict=True):
        step, (state,) = runner.score_columns([column.features], [state])
        assert float((score - step[0]).abs().max()) <= 1e-4


def test_after_an_outage_the_recurrent_state_starts_afresh(tmp_path, esc50):
    """Columns after an outage (a new stretch) continue from the initial state, as that stretch alone would
    offline: with catch-up (one call per run) and column by column alike."""
    from dataclasses import replace

    loaded = load_model(
        _mamba_checkpoint(tmp_path / "m.safetensors", esc50.labels), compute="cpu", precision="fp32"
    )
    cfg = loaded.info.features
    stretches = []
    for path in esc50.clips(2):
        front = front_end(ColumnPlan(loaded.column_frames, cfg))
        stretches.append(front.accept(esc50.read_mono(path)[: int(1.5 * 16000)]) + front.finish())
    first, second = stretches
    second = [replace(w, index=w.index + len(first), stretch=1) for w in second]
    runner = ModelRunner(loaded)
    for max_batch in (64, 1):  # catch-up, and one column per call
        jobs = [Job(0, w, time.monotonic()) for w in first + second]
        _, results = _run_all(loaded, jobs, max_batch=max_batch)
        assert [job.window.index for job, _ in results] == [w.index for w in first + second]
        for stretch in (first, second):
            state = runner.init_state()
            got = [score for job, score in results if job.window.stretch == stretch[0].stretch]
            for score, column in zip(got, stretch, strict=True):
                step, (state,) = runner.score_columns([column.features], [state])
                assert float((score - step[0]).abs().max()) <= 1e-4


def test_int8_catching_up_and_streams_side_by_side_equal_one_stream_stepping(esc50):
    """Dynamic int8 scales the activations of a whole call: a 256-column catch-up differed from stepping
    by up to 0.46 in probability, and a stream scored differently beside louder ones. int8 now steps each
    stream's columns alone in every path (catch-up, several streams, a whole sequence)."""
    from audio_core.scoring import chunk_scores, sequence_scores, step_scores
    from models.quantize import quantize_int8

    labels = [f"c{i}" for i in range(5)]
    torch.manual_seed(2)
    model = StreamingMamba(StreamingMambaConfig(num_classes=5, num_mel_bins=64, d_model=48, n_layers=2))
    model = quantize_int8(model.eval())
    info = ModelInfo("streaming_mamba", {}, labels, FeatureConfig(num_mel_bins=64))
    waves = [esc50.read_mono(p) for p in esc50.clips(2)]
    fbanks = [
        compute_fbank(w * gain, FeatureConfig(num_mel_bins=64))[: 16 * 12]
        for w, gain in zip(waves, (1, 30), strict=True)
    ]
    alone = []
    for fbank in fbanks:
        state, out = model.init_state(1), []
        for i in range(12):
            scored, state = step_scores(
                model, info, fbank[None, 16 * i : 16 * (i + 1)], state, precision="int8"
            )
            out.append(scored)
        alone.append(torch.cat(out))
    both = torch.stack(fbanks)
    caught_up, _ = chunk_scores(model, info, both, model.init_state(2), precision="int8")
    torch.testing.assert_close(caught_up, torch.cat(alone), rtol=0, atol=1e-6)
    side_by_side, _ = step_scores(model, info, both[:, :16], model.init_state(2), precision="int8")
    torch.testing.assert_close(side_by_side, torch.stack([a[0] for a in alone]), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        sequence_scores(model, info, fbanks[0], precision="int8"), alone[0], rtol=0, atol=1e-6
    )
