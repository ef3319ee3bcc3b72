"""The shipped example soundscape and the script that makes it: ESC-10 clips only, each credited."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import soundfile as sf
from esc50_subset import esc50_rows

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import make_example  # noqa: E402

ROW = re.compile(
    r"^\| (?P<start>[\d.]+) \| (?P<end>[\d.]+) \| [\d.]+ "
    r"\| (?P<label>\w+) \| (?P<clip>[\w-]+) \| (?P<credit>.+) \|$"
)


def _rows(markdown: str) -> list[re.Match]:
    return [m for m in map(ROW.match, markdown.splitlines()) if m]


def test_shipped_example_is_long_mono_16k_and_credited() -> None:
    info = sf.info(REPO / "examples" / "long.wav")
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert info.duration >= 60.0
    assert (REPO / "examples" / "long.wav").stat().st_size < 3_000_000
    rows = _rows((REPO / "examples" / "ATTRIBUTION.md").read_text())
    assert len(rows) >= 10
    assert all(float(r["end"]) <= info.duration for r in rows)
    assert "Creative Commons Attribution 3.0" in (REPO / "examples" / "ATTRIBUTION.md").read_text()


def test_script_uses_only_esc10_clips_and_their_credits(esc50_root: Path, tmp_path: Path) -> None:
    code = make_example.main(
        [
            "--esc50",
            str(esc50_root),
            "--out",
            str(tmp_path),
            "--clips",
            "3",
            "--min-duration-s",
            "15",
            "--seed",
            "1",
        ]
    )
    assert code == 0
    esc10 = {make_example.clip_id(r["filename"]): r for r in esc50_rows() if r["esc10"] == "True"}
    credits = make_example.attributions(esc50_root / "meta" / "LICENSE_ESC-50.txt")
    rows = _rows((tmp_path / "ATTRIBUTION.md").read_text())
    assert len(rows) == 3
    for r in rows:
        assert r["clip"] in esc10 and esc10[r["clip"]]["category"] == r["label"]
        assert r["credit"] == credits[r["clip"]]
    assert sf.info(tmp_path / "long.wav").duration >= 15.0
    assert (
        make_example.main(["--esc50", str(esc50_root), "--out", str(tmp_path), "--clips", "1"]) == 1
    )  # < 60 s
