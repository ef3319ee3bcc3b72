"""The one reader of audio files: names in messages stay one line, and every command's reading refuses
the same files (too short to leave a sample at the model's rate, samples far beyond full scale)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_core.audio_file import display_path, read_audio, read_chunks
from audio_core.errors import AudioInputError


def test_a_file_name_with_control_characters_is_shown_on_one_line() -> None:
    shown = display_path("bad\nname\x1b[31m\t.wav")
    assert shown == "bad\\nname\\x1b[31m\\t.wav" and "\n" not in shown and "\x1b" not in shown
    assert display_path(b"x\xff.wav") == "x\\xff.wav"  # bytes that are not UTF-8
    assert display_path("ünïcode name.wav") == "ünïcode name.wav"
    assert display_path("-") == "<stdin>"


def test_whole_file_and_chunked_reading_refuse_the_same_files(tmp_path: Path) -> None:
    """One sample at 44.1 kHz leaves none at 16 kHz: chunked reading (classify) refused it while whole-file
    reading (evaluate, training) gave an empty clip that was padded and scored as silence."""
    one = tmp_path / "one.wav"
    sf.write(one, np.full((1, 1), 0.5, np.float32), 44100, subtype="FLOAT")
    loud = tmp_path / "loud.wav"
    sf.write(loud, np.full((4000, 1), 1e9, np.float32), 16000, subtype="FLOAT")
    for path, message in ((one, "leave none at 16000 Hz"), (loud, "samples beyond")):
        with pytest.raises(AudioInputError, match=message):
            read_audio(path, 16000)
        with pytest.raises(AudioInputError, match=message):
            list(read_chunks(path, 16000))
    fine = tmp_path / "fine.wav"
    sf.write(fine, np.full((4000, 1), 2.0**23, np.float32), 16000, subtype="FLOAT")  # 24-bit-scaled floats
    assert read_audio(fine, 16000).shape == (4000,)
