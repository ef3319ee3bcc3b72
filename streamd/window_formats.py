"""The text of window-level results (``classify --windows``) in each output format: CSV rows, JSON lines,
Raven selection tables (the header Raven and BirdNET use). Files are named as every command names them
(``display_path``). Every window classified has a row in CSV and a line in JSON lines, also one with no
label at or above ``--min-score`` (empty rank, label and score; ``labels: []``), so a window classified
with nothing found is told from one never classified; a Raven table lists selections only (a file with
none has a table with the header alone)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

from audio_core.audio_file import display_path
from streamd.window_scoring import FileResult

CSV_HEADER = ("file", "window", "begin_s", "end_s", "rank", "label", "score")
RAVEN_HEADER = (
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
    "Label",
    "Confidence",
)
RAVEN_VIEW = "Spectrogram 1"
RAVEN_SUFFIX = ".streamd.selection.table.txt"
PART_SUFFIX = ".part"  # a table is written under its name plus this, then renamed
MAX_NAME_BYTES = 255  # the longest file name most file systems take


def raven_table_name(audio: str | Path) -> str:
    """The selection table's file name for an audio file: its stem and ``RAVEN_SUFFIX``; a stem too long
    for a file name once the suffix and the writer's ``.part`` are added is shortened and tagged with a
    hash of the whole stem (so two long names that share their start still get two tables)."""
    stem = Path(audio).stem
    if len(os.fsencode(stem + RAVEN_SUFFIX + PART_SUFFIX)) <= MAX_NAME_BYTES:
        return stem + RAVEN_SUFFIX
    tag = "~" + hashlib.sha1(os.fsencode(stem)).hexdigest()[:12]
    budget = MAX_NAME_BYTES - len(os.fsencode(tag + RAVEN_SUFFIX + PART_SUFFIX))
    while len(os.fsencode(stem)) > budget:  # by characters: a name's bytes may not be UTF-8
        stem = stem[:-1]
    return stem + tag + RAVEN_SUFFIX


def csv_text(result: FileResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    name = display_path(result.file)  # as every command names a file (never a lone surrogate)
    for w in result.windows:
        span = [name, w.index, f"{w.t_start:.3f}", f"{w.t_end:.3f}"]
        if not w.labels:  # classified, nothing at or above --min-score
            writer.writerow([*span, "", "", ""])
        for rank, item in enumerate(w.labels, 1):
            writer.writerow([*span, rank, item["label"], item["score"]])
    return buf.getvalue()


def jsonl_text(result: FileResult) -> str:
    """A line per window; those of a file of digital silence carry ``"digital_silence": true`` (their
    scores mean nothing), as clip-level ``classify --json`` marks such a file."""
    silent = {"digital_silence": True} if result.silent else {}
    lines = [
        json.dumps(
            {
                "file": display_path(result.file),
                "window": w.index,
                "t_start": w.t_start,
                "t_end": w.t_end,
                "labels": w.labels,
                **silent,
            }
        )
        for w in result.windows
    ]
    return "".join(line + "\n" for line in lines)


def raven_text(result: FileResult, high_freq_hz: float) -> str:
    """The selection table of one file: a selection per (window, label), each within the file (a window
    padded past a short file's end, ``pad_with_silence``, ends at the file's end, where Raven's view ends)."""
    rows = ["\t".join(RAVEN_HEADER)]
    selection = 0
    for w in result.windows:
        end = min(w.t_end, result.duration_s) if result.duration_s > w.t_start else w.t_end
        for item in w.labels:
            selection += 1
            cells = (selection, RAVEN_VIEW, 1, f"{w.t_start:.3f}", f"{end:.3f}", "0.0")
            rows.append("\t".join(map(str, (*cells, f"{high_freq_hz:.1f}", item["label"], item["score"]))))
    return "\n".join(rows) + "\n"


def read_raven_table(path: Path) -> list[dict[str, str]]:
    """The rows of a selection table as dicts keyed by its header."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))
