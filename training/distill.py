"""Knowledge distillation: teacher checkpoints and their soft targets (the loss: ``training.distill_loss``).

``[train.distill]`` names one teacher checkpoint or several (an ensemble: their tempered probabilities
are averaged), a temperature ``T`` and a ``weight`` w; the student's loss is
``(1 - w) * label loss + w * T² * KL(teacher_T ‖ softmax(student / T))`` (Hinton et al. 2015).

Two modes:

- ``cached``: every training clip is scored once, un-augmented, on the teacher's own features (its mel
  bins, normalisation and window length, from the fbank cache); mixup and between-class mixing mix these
  probabilities with the clip's labels at the same ratio. Streams of a recurrent model give every step
  over a clip that clip's probabilities.
- ``online``: the teacher scores the very input the student sees after shift, gain and mixing (before
  SpecAugment's masks), so the soft target follows the augmentation. This needs the teacher's features and
  window to be the student's; otherwise, and for streams, the run falls back to ``cached`` and says so.

Streams (``stream_targets``): with "clip" every step over a clip learns the whole clip's probabilities,
also the first steps, which have heard only its start; with "prefix" the step learns the teachers'
probabilities for the clip's audio up to that step (``prefix_probs``: its first k columns, then silence,
the rule of a short input), computed once like the cached ones, so a causal student is never asked for
what it has not heard. The last prefix is the whole clip.

A model with a distillation token (``forward_tokens``: AST) learns the labels with its cls output and the
teacher with its dist output: its argmax (``dist_target = "hard"``, DeiT's hard distillation; "no class",
a uniform row, has none and stays) or its tempered probabilities (``"soft"``). Inference averages them.

Honest teachers: ``{fold}`` in a path is a single / cv run's held-out fold; one trained on it is refused.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audio_core.checks import check_fields, rule
from audio_core.compute import device_of
from models.checkpoint import load_checkpoint
from models.common import ModelInfo

MODES = ("cached", "online")
DIST_TARGETS = ("hard", "soft")
STREAM_TARGETS = ("clip", "prefix")


@dataclass
class DistillConfig:
    """The ``[train.distill]`` table; each field's bounds and choices sit next to it."""

    teachers: list[str] = field(default_factory=list)  # checkpoints ({fold}: the held-out fold); empty: off
    temperature: float = rule(2.0, gt=0)
    weight: float = rule(0.5, ge=0, le=1)  # share of the teacher loss; the label loss gets 1 - weight
    mode: str = rule("cached", choices=MODES)
    dist_target: str = rule("hard", choices=DIST_TARGETS)  # a distillation token's: hard (argmax) | soft
    # streams: a step over a clip learns the teacher's probabilities for the whole clip ("clip") or for
    # the part of it heard up to that step ("prefix": the clip's first columns, then silence)
    stream_targets: str = rule("clip", choices=STREAM_TARGETS)

    def __post_init__(self) -> None:
        if isinstance(self.teachers, str):
            self.teachers = [self.teachers]
        if not all(isinstance(t, str) and t for t in self.teachers):
            raise ValueError("train.distill.teachers must be a checkpoint path or a list of them")
        check_fields(self, "train.distill", ValueError)

    @property
    def enabled(self) -> bool:
        return bool(self.teachers)


class TeacherError(ValueError):
    """A teacher cannot be used for this run; the message is one line."""


def teacher_paths(cfg: DistillConfig, held_out: list[int] | None) -> list[Path]:
    """The teachers' checkpoint paths for a run holding out ``held_out`` (None: full mode)."""
    paths = []
    for template in cfg.teachers:
        if "{fold}" in template:
            if not held_out or len(held_out) != 1:
                raise TeacherError(f"teacher {template}: {{fold}} needs exactly one held-out fold")
            template = template.replace("{fold}", str(held_out[0]))
        paths.append(Path(template))
    return paths


def check_honest(path: Path, info: ModelInfo, held_out: list[int] | None, dataset: str | None = None) -> None:
    """Refuse a teacher that saw a held-out fold (or does not say which folds it saw); its folds are those
    of the data set it records (``extra.dataset``), which must be the student's ``dataset``."""
    if not held_out:
        return
    trained_on = info.extra.get("dataset")
    if dataset is not None and trained_on is not None and trained_on != dataset:
        raise TeacherError(
            f"teacher {path} was trained on data set {trained_on!r}, not {dataset!r}: its folds are not "
            f"this data's, so it cannot be shown never to have seen fold(s) {held_out}"
        )
    seen = info.extra.get("train_folds")
    if seen is None:
        raise TeacherError(f"teacher {path} records no train_folds: cannot show it never saw {held_out}")
    leaked = sorted(set(seen) & set(held_out))
    if leaked:
        raise TeacherError(f"teacher {path} was trained on held-out fold(s) {leaked}: refused")


def check_clips_unseen(path: Path, info: ModelInfo, held_out_clips: list[Path]) -> None:
    """Refuse a teacher that trained on some of the run's held-out clips by their bytes (a copy under
    another name or fold passes the fold check), where it records its clips (``training.trained_clips``)."""
    from training.trained_clips import recorded, seen

    digests = recorded(info.extra)
    if digests and (trained := seen(held_out_clips, digests)):
        count = f"{len(trained)} of the {len(held_out_clips)} held-out clips"
        raise TeacherError(f"teacher {path} trained on {count} (by their bytes): refused")


def load_teachers(
    cfg: DistillConfig, held_out: list[int] | None, labels: list[str], dataset: str | None = None
) -> list[tuple[nn.Module, ModelInfo]]:
    """Load and vet the teachers of a run: honest folds, the student's labels in the same order."""
    from models.checkpoint import CheckpointLoadError

    teachers = []
    for path in teacher_paths(cfg, held_out):
        try:
            model, info = load_checkpoint(path)
        except CheckpointLoadError as exc:
            raise TeacherError(f"teacher: {exc}") from None
        check_teacher(path, info, held_out, labels, dataset)
        teachers.append((model, info))
    return teachers


def check_teacher(
    path: Path, info: ModelInfo, held_out: list[int] | None, labels: list[str], dataset: str | None = None
) -> None:
    """An honest teacher with the student's labels in the same order, single-label."""
    check_honest(path, info, held_out, dataset)
    if info.labels != labels:
        raise TeacherError(
            f"teacher {path} has other labels than the data, or in another order ({len(info.labels)} vs "
            f"{len(labels)}; first difference: {_first_difference(info.labels, labels)})"
        )
    if info.multi_label:
        raise TeacherError(f"teacher {path} is multi-label; distillation here is for single-label data")


def _first_difference(mine: list[str], theirs: list[str]) -> str:
    for i, (a, b) in enumerate(zip(mine, theirs, strict=False)):
        if a != b:
            return f"#{i} {a!r} vs {b!r}"
    return "one list is longer"


@torch.no_grad()
def teacher_logits(
    model: nn.Module, info: ModelInfo, fbank: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Logits ``(N, C)`` of a teacher for un-normalised fbanks ``(N, T, F)`` on its own features (fp32)."""
    model.eval()
    device = device_of(model)
    out = [
        model(info.normalization.apply(fbank[i : i + batch_size].to(device))).float().cpu()
        for i in range(0, len(fbank), batch_size)
    ]
    return torch.cat(out)


def ensemble_probs(logits: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """The mean over teachers of ``softmax(logits / T)``: ``[(N, C), ...] -> (N, C)``."""
    return torch.stack([torch.softmax(z.float() / temperature, dim=-1) for z in logits]).mean(0)


class Teacher:
    """The teachers of one run: clip-level tempered probabilities of the training clips, and (online) the
    models that score augmented batches."""

    def __init__(
        self,
        cfg: DistillConfig,
        teachers: list[tuple[nn.Module, ModelInfo]],
        inputs: list[np.ndarray],
        student: ModelInfo,
        streams: bool = False,
        paths: list[Path] | None = None,
        log: Callable[[str], None] | None = None,
        column_frames: int = 0,
        cache_dir: Path | None = None,
    ) -> None:
        """``inputs[k]``: the training clips' un-normalised fbanks on teacher k's own features;
        ``column_frames``: a recurrent student's step (for "prefix" stream targets, kept in
        ``cache_dir``)."""
        self.cfg = cfg
        self.paths = paths or []
        self.models = teachers
        logits = [
            teacher_logits(m, i, torch.from_numpy(x)) for (m, i), x in zip(teachers, inputs, strict=True)
        ]
        self.clip_probs = ensemble_probs(logits, cfg.temperature)  # (N, C)
        self.prefix_probs: torch.Tensor | None = None  # (N, K, C): "prefix" stream targets, per column
        if streams and cfg.stream_targets == "prefix":
            from training.prefix_targets import cached_prefix_probs

            self.prefix_probs = cached_prefix_probs(
                teachers, inputs, student, cfg.temperature, column_frames, self.paths, cache_dir
            )
        self.online = cfg.mode == "online"
        say = log or (lambda line: print(line, file=sys.stderr))
        if self.online and streams:
            self.online = False
            say("distill: online mode falls back to cached: streams use clip-level teacher targets")
        elif self.online and not all(_same_input(i, student) for _, i in teachers):
            self.online = False
            say("distill: online falls back to cached: a teacher's features or window are not the student's")

    def to(self, device: torch.device) -> None:
        """Run the online teachers on ``device`` (the student's)."""
        for model, _ in self.models:
            model.to(device)

    @torch.no_grad()
    def probs_of(self, fbank: torch.Tensor) -> torch.Tensor:
        """Online: the ensemble's tempered probabilities ``(B, C)`` for un-normalised fbanks ``(B, T, F)``."""
        logits = [teacher_logits(m, i, fbank) for m, i in self.models]
        return ensemble_probs(logits, self.cfg.temperature)


def _same_input(teacher: ModelInfo, student: ModelInfo) -> bool:
    return (
        teacher.features == student.features
        and teacher.normalization.target_frames == student.normalization.target_frames
    )


def vet_teachers(
    cfg: DistillConfig, held_outs: list[list[int] | None], labels: list[str], dataset: str | None = None,
    multi_label: bool = False,
) -> None:  # fmt: skip
    """Check the data and every run's teachers (metadata only) before any training starts."""
    from models.checkpoint import CheckpointLoadError, read_info

    if multi_label:
        raise TeacherError(f"[train.distill] needs single-label data; {dataset or 'the data'} is multi-label")
    for held_out in held_outs:
        for path in teacher_paths(cfg, held_out):
            try:
                info = read_info(path)
            except CheckpointLoadError as exc:
                raise TeacherError(f"teacher: {exc}") from None
            check_teacher(path, info, held_out, labels, dataset)


def build_teacher(
    cfg: DistillConfig,
    clips: list,
    held_out: list[int] | None,
    student: ModelInfo,
    cache_dir: Path | None,
    streams: bool,
    column_frames: int = 0,
    start_s: Sequence[float] | None = None,
    held_out_clips: Sequence[Path] = (),
) -> Teacher:
    """Load a run's teachers and score its training ``clips`` (``training.clips.Clip``; the window of each
    from its ``start_s``, ``training.clip_windows``) on each teacher's own features, from the fbank cache."""
    from training.cache import cached_fbanks

    if cfg.stream_targets == "prefix" and not streams:
        raise TeacherError('train.distill.stream_targets = "prefix" is for [train.sequences] streams')
    teachers = load_teachers(cfg, held_out, student.labels, student.extra.get("dataset"))
    for path, (_, info) in zip(teacher_paths(cfg, held_out), teachers, strict=True):
        check_clips_unseen(path, info, list(held_out_clips))
    inputs = [
        cached_fbanks(clips, info.features, cache_dir, info.normalization.target_frames, start_s)
        for _, info in teachers
    ]
    paths = teacher_paths(cfg, held_out)
    return Teacher(
        cfg, teachers, inputs, student, streams, paths, column_frames=column_frames, cache_dir=cache_dir
    )
