"""Streaming evaluation: soundscapes of held-out clips replayed at several hops, scored per window and for
event onset latency. The replay itself is passed in (``streamd evaluate --streaming`` gives the daemon's
``replay_collect``), so this package does not import the daemon; ``offline=True`` uses the in-memory
reference ``offline_stream_predictions`` instead.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from torch import nn

from audio_core.audio_file import read_audio
from audio_core.windows import checkpoint_window_s
from models.common import ModelInfo, is_recurrent
from training.clips import ClipSet
from training.evaluate import offline_stream_predictions
from training.soundscape import build_soundscape, load_clips, pick_clips
from training.soundscape_scoring import WindowPrediction, pool_reports, score_stream

# (soundscape file, window_s or None for the checkpoint's, hop_s) -> the stream's predictions
Replay = Callable[[Path, float | None, float], list[WindowPrediction]]


def _soundscape_items(clip_set: ClipSet) -> list[tuple[Path, str]]:
    if clip_set.multi_label:
        raise ValueError("streaming evaluation needs a single-label dataset")
    return [(Path(c.path), clip_set.labels[c.targets[0]]) for c in clip_set.clips]


def streaming_evaluation(
    model: nn.Module,
    info: ModelInfo,
    replay: Replay | None,
    clip_set: ClipSet,
    hops: list[float],
    clips: int,
    soundscapes: int,
    gap_s: tuple[float, float],
    seed: int,
    out: Path | None,
    window_s: float | None = None,
    precision: str = "fp32",
) -> list[dict[str, Any]]:
    """Build soundscapes from ``clip_set``, replay each at every hop, and score them (one row per hop).

    ``replay`` None: the offline reference (in ``precision``, as the replay's model runs). Recurrent models
    step per column whatever the hop, so they get one row (``hop_s`` 0). With ``out``, soundscape files of
    an earlier run there beyond this run's count are removed, so that the folder describes this run.
    """
    items = _soundscape_items(clip_set)
    unknown = sorted({label for _, label in items} - set(info.labels))
    if unknown:
        raise ValueError(f"the model does not know the label(s) {unknown[:5]}")
    rate = info.features.sample_rate
    hops = [0.0] if is_recurrent(model) else hops
    reports: dict[float, list[dict[str, Any]]] = {hop: [] for hop in hops}
    with tempfile.TemporaryDirectory() as tmp:
        folder = out if out is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_soundscapes(folder, soundscapes)
        for index in range(soundscapes):
            rng = np.random.default_rng(seed + index)
            chosen = pick_clips(items, clips, rng)
            scape = build_soundscape(load_clips(chosen, rate), rng, rate, gap_s)
            path = folder / f"soundscape{index}.wav"
            sf.write(path, scape.wave, rate, subtype="PCM_16")
            (folder / f"soundscape{index}.json").write_text(json.dumps(scape.truth_json(), indent=1))
            for hop in hops:
                if replay is None:
                    wave = read_audio(path, rate)  # the very samples a replay reads
                    own = window_s if window_s is not None else checkpoint_window_s(info)
                    preds = offline_stream_predictions(
                        model, info, wave, hop or 1.0, own, precision=precision
                    )
                else:
                    preds = replay(path, window_s, hop or 1.0)
                reports[hop].append(score_stream(preds, scape.events))
    results = [{"hop_s": hop, **pool_reports(rows)} for hop, rows in reports.items()]
    if out is not None:
        (out / "streaming.json").write_text(json.dumps(results, indent=1))
    return results


def _remove_stale_soundscapes(folder: Path, keep: int) -> None:
    """Remove ``soundscapeN.wav`` / ``.json`` with N >= ``keep`` (an earlier run's) from ``folder``."""
    for path in folder.glob("soundscape*.*"):
        number = path.stem[len("soundscape") :]
        if path.suffix in (".wav", ".json") and number.isdigit() and int(number) >= keep:
            path.unlink()


def stream_table_markdown(results: list[dict[str, Any]]) -> str:
    """The rows of ``streaming_evaluation`` as a markdown table (what ``evaluate --streaming`` prints)."""

    def fmt(value: float | None, digits: int = 3) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    lines = [
        "| hop s | windows | window accuracy | detected | onset latency median s | mean s "
        "| onset delay median s (stream time) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        hop = "per step" if r["hop_s"] == 0 else f"{r['hop_s']:g}"
        lines.append(
            f"| {hop} | {r['scored_windows']}/{r['windows']} | {fmt(r['window_accuracy'])} | "
            f"{r['detected_events']}/{r['events']} | {fmt(r['onset_latency_median_s'], 2)} | "
            f"{fmt(r['onset_latency_mean_s'], 2)} | {fmt(r.get('onset_delay_median_s'), 2)} |"
        )
    return "\n".join(lines)
