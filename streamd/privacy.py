"""Privacy filter of event clips (``[clips] privacy = "drop_speech"``): does a clip contain speech?

The voice-activity detector is silero-vad (MIT), whose TorchScript model ships inside its wheel
(``pip install streamd[privacy]``). The model file is loaded directly with ``torch.jit.load``: importing
the ``silero_vad`` package would set torch's global thread count as a side effect, and its audio helpers
want torchaudio, which streamd does not use. A clip is downmixed, resampled to 16 kHz with the project's
resampler, and scored in 512-sample frames (32 ms) with the model's state carried from frame to frame; it
has speech when at least ``min_speech_s`` of consecutive frames score ``threshold`` or more. The filter
is loaded on first use; a filter that cannot be loaded is reported once (``error``) and never raises.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from audio_core.resample import downmix, resample_offline

log = logging.getLogger(__name__)

VAD_RATE = 16000
FRAME = 512  # samples per model call at 16 kHz
MODEL_FILE = ("data", "silero_vad.jit")


def model_path() -> Path:
    """The TorchScript model inside the installed silero-vad package (without importing the package)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("silero-vad is not installed (pip install 'streamd[privacy]')")
    path = Path(spec.origin).parent.joinpath(*MODEL_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"silero-vad has no {'/'.join(MODEL_FILE)}")
    return path


def longest_run(flags: np.ndarray) -> int:
    """Length of the longest run of True in ``flags``."""
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


class SpeechDetector:
    """``has_speech(audio, rate)``; ``available()`` loads the model once (False, logged once, if not)."""

    def __init__(self, threshold: float = 0.5, min_speech_s: float = 0.4) -> None:
        self.threshold = threshold
        self.min_frames = max(1, math.ceil(min_speech_s * VAD_RATE / FRAME))
        self.error: str | None = None
        self._model: Any = None
        self._lock = threading.Lock()

    def available(self) -> bool:
        """Load the model if not yet tried; True when it is loaded."""
        with self._lock:
            if self._model is None and self.error is None:
                try:
                    import torch

                    with warnings.catch_warnings():  # torch deprecates TorchScript loading; it works
                        warnings.simplefilter("ignore", DeprecationWarning)
                        self._model = torch.jit.load(str(model_path()), map_location="cpu").eval()
                except Exception as exc:  # not installed, a broken file, an incompatible torch
                    self.error = f"{type(exc).__name__}: {exc}"
                    log.error("privacy filter unavailable (%s); unchecked clips are not saved", self.error)
            return self._model is not None

    def frame_probabilities(
        self, audio: np.ndarray, rate: int, stop_after_speech: bool = False
    ) -> np.ndarray:
        """Speech probability of each 32 ms frame of ``audio`` ((n,) or (n, channels) at ``rate``)."""
        import torch

        if not self.available():
            raise RuntimeError(f"privacy filter unavailable: {self.error}")
        mono = resample_offline(downmix(np.asarray(audio, dtype=np.float32)), rate, VAD_RATE)
        frames = np.zeros((math.ceil(mono.size / FRAME), FRAME), np.float32)  # the tail zero-padded
        frames.reshape(-1)[: mono.size] = mono
        probs: list[float] = []
        run = 0
        with self._lock, torch.inference_mode():
            self._model.reset_states()
            for frame in torch.from_numpy(frames):
                p = float(self._model(frame[None], VAD_RATE))
                probs.append(p)
                run = run + 1 if p >= self.threshold else 0
                if stop_after_speech and run >= self.min_frames:
                    break
        return np.asarray(probs, dtype=np.float32)

    def has_speech(self, audio: np.ndarray, rate: int) -> bool:
        """True when ``audio`` holds at least ``min_speech_s`` of consecutive speech frames."""
        probs = self.frame_probabilities(audio, rate, stop_after_speech=True)
        return longest_run(probs >= self.threshold) >= self.min_frames
