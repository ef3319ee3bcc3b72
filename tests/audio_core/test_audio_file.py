"""The one reader of audio files: names in messages stay one line, and every command's reading refuses
the same files (too short to leave a sample at the model's rate, samples far beyond full scale), from a
file or a pipe alike (a cut WAV, RF64), and reads a WAV whose header says no length to its end."""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_core.audio_file import display_path, probe_audio, read_audio, read_chunks
from audio_core.errors import AudioInputError, TruncatedAudio

KNOWN_CLIP = Path(__file__).resolve().parents[2] / ".." / "shared/data/esc50/audio/1-116765-A-41.flac"


def test_a_file_name_with_control_characters_is_shown_on_one_line() -> None:
    shown = display_path("bad\nname\x1b[31m\t.wav")
    assert shown == "bad\\nname\\x1b[31m\\t.wav" and "\n" not in shown and "\x1b" not in shown
    assert display_path(b"x\xff.wav") == "x\\xff.wav"  # bytes that are not UTF-8
    assert display_path("ünïcode name.wav") == "ünïcode name.wav"
    assert display_path("-") == "<stdin>"


def test_every_file_name_is_shown_as_its_own_text() -> None:
    """A name holding a backslash and an "n" was shown as one holding a newline (and one holding the text
    "\\xff" as one holding that byte): in classify's CSV/JSON lines two files could not be told apart."""
    names = ["a\nb", "a\\nb", b"a\xffb", b"a\\xffb", "a\\b", "a\\\\b", "plain.wav"]
    shown = [display_path(name) for name in names]
    assert len(set(shown)) == len(names), shown
    assert shown[1] == "a\\\\nb" and shown[6] == "plain.wav"


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


@contextmanager
def _fifo_of(tmp_path: Path, data: bytes, name: str = "fifo.wav") -> Iterator[Path]:
    """A real FIFO that a writer thread fills with ``data`` (a pipe: nothing can seek in it)."""
    fifo = tmp_path / name
    os.mkfifo(fifo)

    def write() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # waits for the reader's open
        with contextlib.suppress(BrokenPipeError):  # a reader that refused the input closed it early
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        os.close(fd)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield fifo
    finally:
        writer.join(10)
        fifo.unlink()


def _read_all(path: Path) -> tuple[int, str]:
    """Samples ``read_chunks`` delivered, and how it ended (``ok`` or the error's text)."""
    samples = 0
    try:
        for chunk in read_chunks(path, 16000):
            samples += chunk.size
    except AudioInputError as exc:
        return samples, str(exc)
    return samples, "ok"


@pytest.mark.parametrize(("subtype", "channels"), [("PCM_16", 1), ("PCM_24", 2), ("FLOAT", 1)])
def test_a_wav_cut_short_is_said_to_be_truncated_from_a_pipe_as_from_a_file(
    tmp_path: Path, subtype: str, channels: int
) -> None:
    """By path a cut WAV ended "the file ends 3.33 s before its header says (truncated)"; through a pipe or
    a FIFO (`cat cut.wav | streamd classify -`) it passed as whole. Its header's explicit size is now
    weighed against the frames read there too; a pipe writer's unknown length (0xFFFFFFFF) and a few
    bytes short (a partial frame) promise nothing, from a pipe as from a file."""
    audio = np.tile(sf.read(KNOWN_CLIP, dtype="float32")[0][:, None], (1, channels))
    whole = tmp_path / "whole.wav"
    sf.write(whole, audio, 16000, subtype=subtype)
    data = whole.read_bytes()
    cut = data[: len(data) // 3]
    (tmp_path / "cut.wav").write_bytes(cut)
    by_path = _read_all(tmp_path / "cut.wav")
    assert "s before its header says (truncated)" in by_path[1]
    with _fifo_of(tmp_path, cut) as fifo:
        piped = _read_all(fifo)
    assert piped == (by_path[0], by_path[1].replace(str(tmp_path / "cut.wav"), str(fifo)))
    unknown = bytearray(cut)
    at = unknown.index(b"data") + 4
    unknown[4:8] = unknown[at : at + 4] = b"\xff\xff\xff\xff"
    for name, sent in (("whole", data), ("unknown", bytes(unknown)), ("partial", data[:-5])):
        (tmp_path / f"{name}.wav").write_bytes(sent)
        with _fifo_of(tmp_path, sent, f"{name}.fifo") as fifo:
            piped = _read_all(fifo)
        assert piped == _read_all(tmp_path / f"{name}.wav") and piped[1] == "ok", name


def test_rf64_from_a_pipe_is_refused_and_w64_is_read_whole(tmp_path: Path) -> None:
    """libsndfile read RF64 from a pipe 4 frames short and shifted (79,996 of 80,000 frames, wrong from
    sample 35,663), unsaid: it is refused as MP3 is. W64 reads whole from a pipe and stays allowed."""
    audio = sf.read(KNOWN_CLIP, dtype="float32")[0]
    for fmt in ("RF64", "W64"):
        path = tmp_path / f"clip.{fmt.lower()}"
        sf.write(path, audio, 16000, format=fmt, subtype="PCM_16")
        with _fifo_of(tmp_path, path.read_bytes(), f"{fmt}.fifo") as fifo:
            if fmt == "RF64":
                with pytest.raises(AudioInputError) as refused:
                    list(read_chunks(fifo, 16000))
                assert (
                    str(refused.value) == f"{fifo}: RF64 cannot be read from a pipe; use WAV, AIFF, AU or OGG"
                )
            else:
                piped = np.concatenate(list(read_chunks(fifo, 16000)))
                np.testing.assert_array_equal(piped, read_audio(path, 16000))
        assert read_audio(path, 16000).size == audio.size  # by path both read whole


def _unsized(data: bytes, riff: bytes = b"\0\0\0\0") -> bytes:
    """``data`` (a canonical WAV) with its data size 0 and its RIFF size ``riff``: a length not known."""
    out = bytearray(data)
    at = out.index(b"data") + 4
    out[4:8], out[at : at + 4] = riff, b"\0\0\0\0"
    return bytes(out)


def test_a_wav_whose_header_says_no_length_is_read_to_its_end(tmp_path: Path) -> None:
    """A WAV whose RIFF and data sizes are both 0 (a writer that could not seek back) was "contains no
    audio samples" though size 0 promises nothing: it is read to its end, by classify's and replay's
    reader alike (``open_audio``), whatever its encoding. A data size of 0 that the RIFF size accounts
    for (an empty data chunk, then others) stays empty; from a pipe, which cannot be read again, it is
    one line that says why."""
    audio = sf.read(KNOWN_CLIP, dtype="float32")[0]
    for subtype in ("PCM_16", "FLOAT", "IMA_ADPCM"):
        whole = tmp_path / f"whole_{subtype}.wav"
        sf.write(whole, np.stack([audio, -audio], axis=1) * 0.5, 16000, subtype=subtype)
        unsized = tmp_path / f"unsized_{subtype}.wav"
        unsized.write_bytes(_unsized(whole.read_bytes()))
        assert probe_audio(unsized).frames == probe_audio(whole).frames
        np.testing.assert_array_equal(read_audio(unsized, 16000), read_audio(whole, 16000))
        np.testing.assert_array_equal(
            np.concatenate(list(read_chunks(unsized, 16000))), read_audio(whole, 16000)
        )
    empty_then_list = tmp_path / "empty_then_list.wav"
    sf.write(empty_then_list, np.zeros(0, np.float32), 16000)
    listed = bytearray(empty_then_list.read_bytes()) + b"LIST\x04\0\0\0INFO"
    listed[4:8] = struct.pack("<I", len(listed) - 8)
    empty_then_list.write_bytes(bytes(listed))
    with pytest.raises(AudioInputError, match="contains no audio samples"):
        read_audio(empty_then_list, 16000)
    empty_then_junk = tmp_path / "empty_then_junk.wav"  # an empty WAV (RIFF 36), 3 stray bytes after it
    sf.write(empty_then_junk, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    empty_then_junk.write_bytes(empty_then_junk.read_bytes() + b"\0\0\0")
    with pytest.raises(AudioInputError, match="contains no audio samples"):
        read_audio(empty_then_junk, 16000)
    sent = _unsized((tmp_path / "whole_PCM_16.wav").read_bytes())
    with _fifo_of(tmp_path, sent) as fifo, pytest.raises(AudioInputError) as piped:
        list(read_chunks(fifo, 16000))
    assert str(piped.value) == (
        f"{fifo}: its WAV header says 0 bytes of audio (a length it did not know) and libsndfile reads none "
        "from a pipe; give it as a file, where it is read to its end"
    )


def test_an_mp3_read_in_blocks_gives_the_samples_of_a_whole_read(tmp_path: Path, capfd) -> None:
    """python-soundfile seeks back to the position after every block it reads; for MP3 that restarts the
    decoder without its bit reservoir, and the first frame after each block decoded wrong (up to 0.14 of
    full scale on these clips, "part2_3_length too large" on stderr): replay and classify, which read in
    blocks of other sizes, disagreed with each other and with training's whole read."""
    from support.paths import esc10_clips

    wave = np.concatenate([sf.read(str(c), dtype="float32")[0] for c in esc10_clips(4, 1)])
    path = tmp_path / "four.mp3"
    sf.write(path, wave, 16000, format="MP3")
    whole = read_audio(path, 16000)
    capfd.readouterr()
    for block_s in (0.064, 1.0):
        blocks = np.concatenate(list(read_chunks(path, 16000, block_s=block_s)))
        assert blocks.shape == whole.shape and np.abs(blocks - whole).max() < 1e-6, block_s
    assert "part2_3_length" not in capfd.readouterr().err
