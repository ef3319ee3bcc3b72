"""MP3s that the decoder reads short: joined end to end, VBR with no length header, or cut short. Each was
read as a shorter file without a word (5 s of a 10-s join, 1 s of a 5-s VBR file); now each is one line
naming the file, from the one reader (classify, replay, training alike), and a whole MP3 reads as before."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_core.audio_file import probe_audio, read_audio
from audio_core.errors import AudioInputError
from audio_core.mpeg_length import _first_frame, _frame, held_samples
from audio_core.shortfall import opening_shortfall
from streamd.cli import main
from training.own_data import scan_file

SR = 16000


def tone_then_noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def write_mp3(path: Path, wave: np.ndarray, **options: object) -> Path:
    sf.write(path, wave, SR, format="MP3", **options)
    return path


def test_a_whole_mp3_is_read_whole_and_its_frames_are_counted(tmp_path: Path) -> None:
    """The walk over the frames agrees with what the decoder delivers (within an encoder's delay)."""
    for mode in ("CONSTANT", "VARIABLE"):
        path = write_mp3(tmp_path / f"{mode}.mp3", tone_then_noise(5.0), bitrate_mode=mode)
        info = probe_audio(path)
        assert info.missing_s == 0.0 and info.undecodable is None and opening_shortfall(info) is None
        assert read_audio(path, SR).size == 5 * SR
        held = held_samples(path.read_bytes())
        assert held is not None and held[1:] == (SR, True)  # libsndfile writes a length header
        assert 5 * SR <= held[0] <= 5 * SR + 3 * 1152


def test_mp3s_joined_end_to_end_are_refused_by_name_not_read_short(tmp_path: Path, capsys) -> None:
    """The first file's length header stopped the decoder at its own end: 5 s of a 10-s recording."""
    first = write_mp3(tmp_path / "a.mp3", tone_then_noise(5.0, 1))
    second = write_mp3(tmp_path / "b.mp3", tone_then_noise(5.0, 2))
    joined = tmp_path / "joined.mp3"
    joined.write_bytes(first.read_bytes() + b"ID3\x03\x00\x00\x00\x00\x00\x05tag.." + second.read_bytes())
    info = probe_audio(joined)
    assert info.duration_s == pytest.approx(5.0) and info.undecodable is not None
    said_beyond = r"its decoder stops at 5\.00 s, (\d+\.\d\d) s before its last MPEG frame \(MP3s joined"
    beyond = re.match(said_beyond, info.undecodable)
    assert beyond is not None and float(beyond[1]) == pytest.approx(5.0, abs=0.3)
    said = f"{joined}: {info.undecodable}; convert it whole first, e.g. ffmpeg -i FILE out.flac"
    with pytest.raises(AudioInputError) as caught:
        read_audio(joined, SR)
    assert str(caught.value) == said
    assert scan_file(joined) == said.removeprefix(f"{joined}: ")  # own data leaves it out, saying why
    assert main(["classify", str(joined), str(first)]) == 1
    out, err = capsys.readouterr()
    assert f"streamd: error: {said}" in err.splitlines() and len(out.splitlines()) == 1
    assert "Traceback" not in err
    windows = ["classify", str(joined), "--windows", "--out", str(tmp_path / "w.csv"), "--no-progress"]
    assert main(windows) == 1  # its windows up to where the decoder stops, and not "all it holds was read"
    err = capsys.readouterr().err
    assert f"{said}; what followed its first 5.00 s was not classified: the windows" in err


def test_a_vbr_mp3_with_no_length_header_is_refused_when_its_decoder_would_stop_early(tmp_path: Path) -> None:
    """With no length header the decoder guesses the length from the first frame's size: loud first
    (large frames), quiet after, it guessed about 1 s of a 5-s file."""
    wave = np.concatenate([tone_then_noise(1.0) * 4, np.zeros(4 * SR, np.float32)])
    data = write_mp3(tmp_path / "v.mp3", wave, bitrate_mode="VARIABLE").read_bytes()
    start = _first_frame(data)
    header = _frame(data, start)
    assert start is not None and header is not None
    bare = tmp_path / "bare.mp3"
    bare.write_bytes(data[:start] + data[start + header[0] :])  # the length header's frame removed
    held = held_samples(bare.read_bytes())
    assert held is not None and not held[2]
    info = probe_audio(bare)
    beyond = re.search(r", (\d+\.\d\d) s before its last MPEG frame", info.undecodable or "")
    assert info.duration_s < 2.5 and beyond is not None and float(beyond[1]) > 2.5
    with pytest.raises(AudioInputError, match="its decoder stops at"):
        read_audio(bare, SR)


def test_an_mp3_cut_short_is_truncated_as_a_wav_is(tmp_path: Path, capsys) -> None:
    data = write_mp3(tmp_path / "whole.mp3", tone_then_noise(5.0)).read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])
    info = probe_audio(cut)
    assert info.missing_s == pytest.approx(2.5, abs=0.3) and info.undecodable is None
    with pytest.raises(
        AudioInputError, match=r"the file ends \d\.\d\d s before its header says \(truncated\)"
    ):
        read_audio(cut, SR)
    assert main(["replay", str(cut), "--check"]) != 0
    assert "(truncated)" in capsys.readouterr().err
