"""The one reader of audio files: names in messages stay one line, and every command's reading refuses
the same files (too short to leave a sample at the model's rate, samples far beyond full scale)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_core.audio_file import display_path, probe_audio, read_audio, read_chunks
from audio_core.errors import AudioInputError, TruncatedAudio


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


def _wav(path: Path, seconds: float, subtype: str = "PCM_16", fmt: str = "WAV") -> Path:
    wave = np.sin(np.arange(int(seconds * 16000)) / 7.0).astype(np.float32) * 0.3
    sf.write(path, wave, 16000, subtype=subtype, format=fmt)
    return path


@pytest.mark.parametrize(("subtype", "fmt"), [("PCM_16", "WAV"), ("PCM_24", "WAV"), ("FLOAT", "RF64")])
def test_a_wav_cut_short_is_said_to_be_truncated_after_its_audio(tmp_path: Path, subtype, fmt) -> None:
    """libsndfile reads a WAV whose data chunk was cut short up to its last frame without a word, so a
    cut recording was classified as if whole. Chunked reading now delivers what is there and then raises
    ``TruncatedAudio`` (as for a FLAC with a corrupt tail); whole-file reading refuses it."""
    whole = _wav(tmp_path / "whole.wav", 3.0, subtype, fmt)
    cut = tmp_path / "cut.wav"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    assert probe_audio(whole).missing_s == 0.0
    info = probe_audio(cut)
    assert info.missing_s == pytest.approx(3.0 - info.duration_s, abs=1e-3) and info.missing_s > 1.5
    chunks = []
    with pytest.raises(TruncatedAudio, match=r"cut\.wav: the file ends 2\.\d\d s before its header says"):
        for chunk in read_chunks(cut, 16000):
            chunks.append(chunk)
    assert sum(c.size for c in chunks) == info.frames  # every present sample came first
    with pytest.raises(AudioInputError, match="before its header says"):
        read_audio(cut, 16000)
    assert read_audio(whole, 16000).size == 48000


def test_a_wav_of_unknown_length_or_a_few_bytes_short_is_not_called_truncated(tmp_path: Path) -> None:
    """A WAV written to a pipe says 0xFFFFFFFF (length unknown): no promise, so nothing is missing; one
    whose header is a few bytes off (a partial frame) is a writer's rounding, read as before."""
    short = _wav(tmp_path / "short.wav", 1.0, "PCM_24")
    short.write_bytes(short.read_bytes()[:-7])
    assert probe_audio(short).missing_s == 0.0
    assert read_audio(short, 16000).size == 15997
    gsm = _wav(tmp_path / "gsm.wav", 1.0, "GSM610")  # 1625 bytes a second: 40 bytes are 25 ms, one block
    gsm.write_bytes(gsm.read_bytes()[:-40])
    assert probe_audio(gsm).missing_s == 0.0
    path = _wav(tmp_path / "streamed.wav", 1.0)
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = b"\xff\xff\xff\xff"
    data[4:8] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    assert probe_audio(path).missing_s == 0.0
    assert read_audio(path, 16000).size == 16000
