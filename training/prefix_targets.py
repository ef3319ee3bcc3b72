"""Prefix teacher targets for a recurrent student's streams (``[train.distill] stream_targets = "prefix"``).

A causal student at a step over a clip has heard only the clip's start. Asked for the teachers' opinion of
the whole clip there, it learns to guess what it cannot know; asked for their opinion of what it has
heard, it learns what can be known by then. The teachers score each clip's first k + 1 columns with the
rest of their window silent (the fbank floor: padding with silence, the rule of a short input), once,
like the cached clip-level targets (``training.distill``), and kept in the run's cache folder under a
key of the teachers' bytes, the clips' features, the temperature and the column (a resumed run, or the
next stage from the same teachers, reads them back instead of scoring every prefix again).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.common import ModelInfo
from training.distill import TeacherError, ensemble_probs, teacher_logits
from training.sequences import LOG_FLOOR  # a silent frame's fbank (the floor, log(eps))

VERSION = 1  # of the rule above: a changed rule must not read targets the old one kept


def prefix_probs(
    teachers: list[tuple[nn.Module, ModelInfo]],
    inputs: list[np.ndarray],
    student: ModelInfo,
    temperature: float,
    column: int,
) -> torch.Tensor:
    """``(N, K, C)``: the ensemble's tempered probabilities for each clip's first ``k + 1`` columns of
    ``column`` frames (the student's step), the rest of the teacher's window silence (the fbank floor),
    k < K; the last prefix holds the whole clip. The teachers' frames must be the student's (same shift)."""
    if column <= 0:
        raise TeacherError(
            'train.distill.stream_targets = "prefix" needs a recurrent student (column_frames)'
        )
    for _, info in teachers:
        if info.features.frame_shift_ms != student.features.frame_shift_ms:  # frames at the same times
            raise TeacherError(
                'train.distill.stream_targets = "prefix" needs teachers with the student\'s frame shift '
                f"({info.features.frame_shift_ms} vs {student.features.frame_shift_ms} ms)"
            )
    frames = max(x.shape[1] for x in inputs)
    count = -(-frames // column)
    per_prefix = []
    for k in range(count):
        heard = (k + 1) * column
        logits = []
        for (model, info), x in zip(teachers, inputs, strict=True):
            clip = torch.from_numpy(x)
            if heard < clip.shape[1]:
                clip = clip.clone()
                clip[:, heard:] = LOG_FLOOR
            logits.append(teacher_logits(model, info, clip))
        per_prefix.append(ensemble_probs(logits, temperature))
    return torch.stack(per_prefix, dim=1)


def cached_prefix_probs(
    teachers: list[tuple[nn.Module, ModelInfo]],
    inputs: list[np.ndarray],
    student: ModelInfo,
    temperature: float,
    column: int,
    paths: list[Path],
    cache_dir: Path | None,
) -> torch.Tensor:
    """``prefix_probs``, read from ``cache_dir`` when these teachers (``paths``) scored these inputs
    before; without a cache folder or the teachers' paths it is computed."""
    if cache_dir is None or len(paths) != len(teachers):
        return prefix_probs(teachers, inputs, student, temperature, column)
    from models.atomic_write import write_atomically
    from models.checkpoint import file_digest

    ident = [
        VERSION,
        [file_digest(p) for p in paths],
        float(temperature),
        column,
        student.features.frame_shift_ms,
    ]
    digest = hashlib.sha256(json.dumps(ident).encode())
    for x in inputs:
        digest.update(repr(x.shape).encode())
        digest.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    target = Path(cache_dir) / "prefix_targets" / f"{digest.hexdigest()[:40]}.npy"
    if target.exists():
        return torch.from_numpy(np.load(target))
    probs = prefix_probs(teachers, inputs, student, temperature, column)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, lambda tmp: np.save(tmp, probs.numpy()))
    return probs
