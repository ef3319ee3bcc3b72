"""AIFF, AU and W64 files cut short, and chained Ogg files: each was read as a shorter whole file without a
word (libsndfile cuts its frame count to the bytes present; it stops at the end of a chain's first
stream). Now each is one line naming the file, from the one reader, as a cut WAV is; whole files read as
before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_core.audio_file import probe_audio, read_audio
from audio_core.errors import AudioInputError
from audio_core.shortfall import opening_shortfall
from streamd.cli import main

SR = 16000
KINDS = [
    ("AIFF", "PCM_16", "aiff"),
    ("AIFF", "FLOAT", "aifc"),
    ("AIFF", "ULAW", "aiff"),
    ("AU", "PCM_24", "au"),
    ("AU", "ULAW", "au"),
    ("W64", "PCM_16", "w64"),
    ("W64", "FLOAT", "w64"),
]


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.mark.parametrize(("form", "subtype", "suffix"), KINDS)
def test_a_cut_aiff_au_or_w64_is_truncated_as_a_wav_is_and_a_whole_one_reads_whole(
    tmp_path: Path, form: str, subtype: str, suffix: str
) -> None:
    whole = tmp_path / f"whole.{suffix}"
    sf.write(whole, np.stack([noise(5.0), noise(5.0, 1)], axis=1), SR, format=form, subtype=subtype)
    info = probe_audio(whole)
    assert info.missing_s == 0.0 and opening_shortfall(info) is None
    assert read_audio(whole, SR).size == 5 * SR
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(data[: len(data) * 6 // 10])
    info = probe_audio(cut)
    assert info.missing_s == pytest.approx(2.0, abs=0.05)
    with pytest.raises(AudioInputError) as caught:
        read_audio(cut, SR)
    said = f"the file ends {info.missing_s:.2f} s before its header says (truncated)"
    assert str(caught.value) == f"{cut}: {said}"


def _streamed(path: Path, form: str) -> bytes:
    """The header a writer that cannot seek back leaves: the placeholder sizes of AU (0xFFFFFFFF), sox's
    AIFF (SSND 0x7F000000) and ffmpeg's W64 (2^63 - 1)."""
    sf.write(path, noise(3.0), SR, format=form, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    if form == "AU":
        data[8:12] = b"\xff\xff\xff\xff"
    elif form == "AIFF":
        ssnd = data.index(b"SSND")
        data[ssnd + 4 : ssnd + 8] = (0x7F000000).to_bytes(4, "big")
    else:
        chunk = data.index(b"data")
        data[chunk + 16 : chunk + 24] = (2**63 - 1).to_bytes(8, "little")
    return bytes(data)


@pytest.mark.parametrize(("form", "suffix"), [("AU", "au"), ("AIFF", "aiff"), ("W64", "w64")])
def test_a_header_of_unknown_length_is_no_promise_and_the_file_reads_to_its_end(
    tmp_path: Path, form: str, suffix: str
) -> None:
    """Files written to a pipe (``ffmpeg -f w64 - > x.w64``, ``sox ... -t aiff -``) say their length is
    unknown: such a W64 and AIFF were refused as cut short by years."""
    path = tmp_path / f"streamed.{suffix}"
    path.write_bytes(_streamed(path, form))
    assert probe_audio(path).missing_s == 0.0 and read_audio(path, SR).size == 3 * SR


@pytest.mark.parametrize("subtype", ["VORBIS", "OPUS"])
def test_a_chained_ogg_is_refused_by_name_and_a_single_one_reads_whole(
    tmp_path: Path, subtype: str, capsys
) -> None:
    """``cat a.ogg b.ogg`` gave the first file's 5 s of 10."""
    first, second = tmp_path / "a.ogg", tmp_path / "b.ogg"
    sf.write(first, noise(5.0), SR, format="OGG", subtype=subtype)
    sf.write(second, noise(5.0, 1), SR, format="OGG", subtype=subtype)
    assert probe_audio(first).undecodable is None and read_audio(first, SR).size == 5 * SR
    chained = tmp_path / "chained.ogg"
    chained.write_bytes(first.read_bytes() + second.read_bytes())
    info = probe_audio(chained)
    share = len(second.read_bytes()) / len(chained.read_bytes())
    assert info.undecodable == (
        f"its decoder stops at 5.00 s, the end of the first of 2 Ogg streams chained in it, leaving "
        f"{share:.0%} of its bytes unread (Ogg files joined end to end, or a stream dump)"
    )
    with pytest.raises(AudioInputError, match="chained in it"):
        read_audio(chained, SR)
    assert main(["classify", str(chained), str(first)]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and f"streamd: error: {chained}: its decoder stops at 5.00 s" in err
    assert main(["replay", str(chained), "--check"]) != 0
    assert "Ogg streams chained in it" in capsys.readouterr().err
