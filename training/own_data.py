"""A user's own data set, found as it lies on disk: class folders, split folders or a CSV.

Layouts of ``DIR`` (or a CSV file given directly):

- class folders: ``DIR/<class>/**/<audio>``; no fixed split, so a held-out part of train is carved
  (``holdout_frac`` of each class, every k-th file in name order, and at least the last file of a class
  of two or more) and named ``holdout``; when no class has two usable files, that is an error;
- split folders: ``DIR/train/<class>/...`` plus ``DIR/val/<class>/...`` and/or ``DIR/test/<class>/...``
  (only when every folder with audio in DIR is such a split folder of class folders: a class may be
  called ``train``, as one of ESC-50's is);
- a CSV (``DIR/*.csv`` when DIR holds exactly one and at most one folder with audio, e.g. ``DIR/audio/``,
  or the file itself; beside several class folders a CSV is left out with a note, several CSVs beside
  one folder are refused as ambiguous): rows
  ``path,label[,split]`` (a header row ``path,label[,split]`` is optional; paths relative to the CSV's
  folder; split one of train / val / test, empty = train).

The clips of each split get a fold: train 1, val 2, test 3, carved held-out part 4, so that the
experiment machinery (``data.folds`` / ``data.val_folds``) expresses the fixed split exactly. The
held-out split (what the report is on) is test (a val split beside it is set aside: ``OwnData.set_aside``),
else val, else the carved part. Every file is checked by decoding it once (``usable_files``, as ``evaluate
--folders`` does: unreadable files, broken links, files without samples, with NaN or infinite samples or
with no signal are reported and left out); a class with no usable training clip is an error naming it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from audio_core.audio_file import display_path, probe_audio, read_chunks
from audio_core.digital_silence import SignalWatch
from audio_core.errors import AudioInputError
from models.common import label_name
from training.audio_folders import (
    audio_files,
    class_dirs,
    class_tree,
    loose_files_note,
    nested_classes_hint,
    other_files_note,
    repeated_file,
    repeated_file_note,
    unusable_class_note,
)
from training.clips import Clip, ClipSet, dataset_name
from training.own_csv import csv_entries
from training.readers import DatasetError

SPLIT_FOLDS = {"train": 1, "val": 2, "test": 3, "holdout": 4}
SPLIT_NAMES = {fold: name for name, fold in SPLIT_FOLDS.items()}


@dataclass
class OwnData:
    """What was found: the clips (folds = splits), the layout, and every problem met on the way."""

    clip_set: ClipSet
    layout: str
    held_out: str
    durations: dict[Path, float]
    problems: list[str] = field(default_factory=list)

    @property
    def held_out_fold(self) -> int:
        return SPLIT_FOLDS[self.held_out]

    def training_clips(self) -> list[Path]:
        """The files a run trains on (the train split)."""
        return [Path(c.path) for c in self.clip_set.clips if c.fold == SPLIT_FOLDS["train"]]

    def set_aside(self) -> list[Path]:
        """The clips a run neither trains on nor holds out (``val`` beside ``test``): not in its report."""
        used = (SPLIT_FOLDS["train"], self.held_out_fold)
        return [Path(c.path) for c in self.clip_set.clips if c.fold not in used]

    def counts(self) -> dict[str, Counter]:  # clips per class, per split name
        out: dict[str, Counter] = {}
        for clip in self.clip_set.clips:
            out.setdefault(SPLIT_NAMES[clip.fold], Counter())[self.clip_set.labels[clip.targets[0]]] += 1
        return out


def _holds_class_folders(folder: Path) -> bool:
    """A split folder (``train/``...): sub-folders with audio (a class folder named ``train``, like
    ESC-50's class, holds its audio directly; a stray file beside a split's class folders is left out
    and said, not taken as a sign of a class)."""
    return any(audio_files(d) for d in class_dirs(folder))


SCAN_BLOCK_S = 10.0  # seconds decoded at a time by ``scan_file``
MIN_SIGNAL_S = 0.065  # a clip shorter than this (5 frames of the 25-ms fbank every 10 ms) has no signal


def scan_file(path: Path) -> tuple[float, bool] | str:
    """(its duration in seconds, whether it has a signal: ``SignalWatch``), or why it cannot be used: read
    through by the one audio reader (``read_chunks``), so a file the features could not use is found here."""
    if not path.is_file():
        return "a folder, not an audio file" if path.is_dir() else "missing file or broken link"
    samples, signal = 0, SignalWatch()
    try:
        rate = probe_audio(path).sample_rate
        for chunk in read_chunks(path, rate, SCAN_BLOCK_S, signal):
            samples += chunk.size
    except AudioInputError as exc:
        return str(exc).removeprefix(f"{display_path(path)}: ")
    return samples / rate, signal.heard


def scan_files(files: Iterable[Path]) -> tuple[dict[Path, float], list[str], list[Path]]:
    """Each file decoded once (``scan_file``): the durations of the usable ones, ``"FILE: why"`` for the
    others, and the usable ones of one value throughout (digital silence)."""
    durations: dict[Path, float] = {}
    broken: list[str] = []
    silent: list[Path] = []
    for file in dict.fromkeys(files):
        scanned = scan_file(file)
        if isinstance(scanned, str):
            broken.append(f"{display_path(file)}: {scanned}")  # one line, whatever the name
            continue
        durations[file] = scanned[0]
        if not scanned[1]:
            silent.append(file)
    return durations, broken, silent


def no_signal(durations: dict[Path, float], silent: list[Path]) -> tuple[list[Path], str | None]:
    """The clips with no signal (digital silence, or shorter than ``MIN_SIGNAL_S``), and the one line that
    reports them as left out (None when there are none): a labelled clip of silence would contradict the
    background examples, which teach that silence is no class."""
    zeros = set(silent)
    quiet = [f for f, d in durations.items() if f in zeros or d < MIN_SIGNAL_S]
    if not quiet:
        return [], None
    first = quiet[0]
    why = "digital silence" if first in zeros else f"{durations[first] * 1000:.3g} ms long"
    return quiet, (
        f"{len(quiet)} clip(s) with no signal left out (digital silence after the downmix to mono, or "
        f"shorter than {MIN_SIGNAL_S * 1000:.0f} ms), e.g. {display_path(first)} ({why})"
    )


def left_out_note(broken: list[str]) -> str:
    """The one line that reports the files ``scan_files`` found unusable."""
    return f"{len(broken)} unusable file(s) left out, e.g. {broken[0]}"


def usable_files(labelled: Iterable[tuple[Path, str]]) -> tuple[dict[Path, float], list[str]]:
    """The one check of ``train --data`` and ``evaluate --folders`` on ``(file, label)`` pairs: the durations
    of the usable files (decoded, with signal), and the lines saying what was left out, in this order:
    unusable files (``left_out_note``), clips with no signal (``no_signal``), and each class none of whose
    files is left (``unusable_class_note``)."""
    entries = list(labelled)
    durations, broken, silent = scan_files(file for file, _ in entries)
    warnings = [left_out_note(broken)] if broken else []
    quiet, note = no_signal(durations, silent)
    if note:  # left out, as an unusable file is
        warnings.append(note)
        durations = {f: d for f, d in durations.items() if f not in quiet}
    kept = {label for file, label in entries if file in durations}
    files = Counter(label for _, label in entries)
    warnings += [unusable_class_note(label, n) for label, n in files.items() if label not in kept]
    return durations, warnings


def _from_folders(
    root: Path, splits: dict[str, Path], said: tuple[Path, ...] = ()
) -> tuple[list[tuple[Path, str, str]], list[str]]:
    """Entries of class folders (in split folders), with problems; ``said``: files noted elsewhere. Each
    folder of class folders is listed as ``evaluate --folders`` lists one (``class_tree``)."""
    entries: list[tuple[Path, str, str]] = []
    others: list[Path] = []
    problems = [note] if root not in splits.values() and (note := loose_files_note(root, said)) else []
    for split, folder in splits.items():
        classes, other, notes = class_tree(folder, said=said)
        problems += notes
        others += other
        entries += [(f, label_name(class_dir.name), split) for class_dir, files in classes for f in files]
    # one file per clip, as a CSV's rows: a link must not repeat a training clip or hold it out too
    if repeated := repeated_file(file for file, _, _ in entries):
        raise DatasetError(repeated_file_note(*repeated))
    if others:
        problems.append(other_files_note(others))
    return entries, problems


def detect_layout(root: Path) -> tuple[str, list[tuple[Path, str, str]], list[str]]:
    """(layout name, ``(file, label, split)`` entries, problems) of ``root`` (a folder or a CSV file)."""
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DatasetError(f"{root}: expected a folder or a .csv file of path,label[,split] rows")
        return "csv", *csv_entries(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such data folder")
    subdirs = {p.name.lower(): p for p in class_dirs(root)}
    splits = {
        s: subdirs[s] for s in ("train", "val", "test") if s in subdirs and _holds_class_folders(subdirs[s])
    }
    with_audio = [name for name, d in subdirs.items() if name not in splits and audio_files(d)]
    if splits and not with_audio:  # only split folders of class folders (a class may be named "train")
        if "train" not in splits:
            raise DatasetError(
                f"{root}: {' and '.join(f'{s}/' for s in splits)} of class folders but no train/ folder"
            )
        entries, problems = _from_folders(root, splits)
        return "split folders", entries, problems
    csvs = sorted(p for p in root.glob("*.csv") if p.is_file())
    folders = len(with_audio) + len(splits)
    if len(csvs) == 1 and folders <= 1:  # one folder is no classes: e.g. DIR/audio/
        return "csv", *csv_entries(csvs[0])
    names = ", ".join(p.name for p in csvs[:3]) + (", ..." if len(csvs) > 3 else "")
    if csvs and folders <= 1:  # several lists of clips: which was meant is not known
        raise DatasetError(
            f"{root}: several CSV files ({names}): give --data {root / csvs[0].name} (or another)"
        )
    entries, problems = _from_folders(root, {"train": root}, tuple(csvs))
    if csvs:  # class folders win; a list of clips beside them is said, with the way to use it instead
        problems.append(
            f"{names} beside the class folders: read as class folders (to train on a CSV's list of clips "
            f"instead, give --data {root / csvs[0].name})"
        )
    if splits:  # split folders beside class folders: read as classes named train / val / test
        shown = ", ".join(f"{s}/" for s in splits)
        problems.append(
            f"{shown} hold class folders as split folders do, but {root} also has other folders with audio "
            f"(e.g. {with_audio[0]}/): all read as class folders, so {shown} are classes (put every class "
            "under train/ val/ test/, or none)"
        )
    if not entries:  # files of other extensions (phone recordings, say) are what the user has: say so
        others = [p for p in problems if "not audio by their extension" in p]
        raise DatasetError(
            f"{root}: no audio found: expected one folder per class, train/ val/ test/ folders of class "
            "folders, or a CSV of path,label[,split]" + (f" ({others[0]})" if others else "")
        )
    return "class folders", entries, problems


def _carve(clips: list[Clip], holdout_frac: float) -> list[Clip]:
    """Move every k-th training clip of each class (k = 1 / holdout_frac, in name order) to the held-out
    fold; a class of 2 to k - 1 clips gives its last one, a class of one clip keeps it for training."""
    step = max(2, round(1 / holdout_frac))
    per_class: dict[tuple[int, ...], list[int]] = {}
    for i, clip in enumerate(clips):
        if clip.fold == SPLIT_FOLDS["train"]:
            per_class.setdefault(clip.targets, []).append(i)
    held: set[int] = set()
    for indices in per_class.values():
        if len(indices) >= 2:
            held.update(indices[step - 1 :: step] or indices[-1:])
    return [Clip(c.path, c.targets, SPLIT_FOLDS["holdout"]) if i in held else c for i, c in enumerate(clips)]


def read_own_data(root: str | Path, holdout_frac: float = 0.1) -> OwnData:
    """Find the layout of ``root``, check every file, and build the clip set (see the module doc)."""
    root = Path(root)
    if not 0 < holdout_frac < 1:
        raise DatasetError(f"holdout_frac must be between 0 and 1, got {holdout_frac}")
    layout, entries, problems = detect_layout(root)
    durations, warnings = usable_files((file, label) for file, label, _ in entries)
    problems += warnings
    usable = [entry for entry in entries if entry[0] in durations]
    labels = sorted({label for _, label, _ in usable})
    untrained = sorted(set(labels) - {label for _, label, split in usable if split == "train"})
    why = f" ({warnings[0]})" if warnings else ""  # what was left out, said before training would say it
    if untrained:
        raise DatasetError(f"{root}: class(es) {untrained[:5]} have no usable training clip{why}")
    if not usable:
        raise DatasetError(f"{root}: no usable audio files{why}")
    index = {label: i for i, label in enumerate(labels)}
    clips = [Clip(f, (index[label],), SPLIT_FOLDS[split]) for f, label, split in usable]
    if problem := ClipSet(clips, labels).one_class_problem():
        gone = [f" ({w})" for w in warnings if "is usable; left out" in w] + [why]  # a class lost, first
        hint = nested_classes_hint(usable[0][0], labels[0]) if len(labels) == 1 else ""
        other = f"add clips of the other sounds it should tell apart{hint}"
        raise DatasetError(f"{root}: {problem} ({other}){gone[0]}")
    present = {c.fold for c in clips}
    held_out = next((s for s in ("test", "val") if SPLIT_FOLDS[s] in present), "holdout")
    if held_out == "holdout":
        clips = _carve(clips, holdout_frac)
        problems += _carve_problems(root, clips, labels, why)
    clip_set = ClipSet(clips, labels, multi_label=False, name=dataset_name(root))
    return OwnData(clip_set, layout, held_out, durations, problems + clip_set.case_twins())


def _carve_problems(root: Path, clips: list[Clip], labels: list[str], why: str = "") -> list[str]:
    """The classes the carved held-out part leaves out (their only clip is trained on); none carved at
    all is an error, raised before any features are computed (``why``: what was left out, if any)."""
    held = {c.targets[0] for c in clips if c.fold == SPLIT_FOLDS["holdout"]}
    if not held:
        raise DatasetError(
            f"{root}: no class has two usable clips, so none can be held out for the report; give a class "
            f"at least two clips, or add a test/ folder (in a CSV: rows with split test){why}"
        )
    return [
        f"class {label!r}: one usable clip, trained on; none held out, so the report has no clip of it"
        for i, label in enumerate(labels)
        if i not in held
    ]
