"""A labelled clip list: what every dataset reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Clip:
    """One audio file with its label indices and (optional) cross-validation fold."""

    path: Path
    targets: tuple[int, ...]
    fold: int | None = None


@dataclass
class ClipSet:
    """Clips plus the label names their ``targets`` index into."""

    clips: list[Clip]
    labels: list[str]
    multi_label: bool = False
    name: str = field(default="dataset")

    def one_class_problem(self) -> str | None:
        """Why this set cannot train a classifier (a single label: one softmax output scores 1.0 for any
        input), or None."""
        if len(self.labels) < 2 and not self.multi_label:
            return f"one class ({self.labels[0]!r}): a classifier needs at least two"
        return None

    def case_twins(self) -> list[str]:
        """One line per group of labels that differ only in letter case (``Dog``, ``dog``): each is a class
        of its own, which a typo in a folder name or a CSV row makes unseen."""
        groups: dict[str, list[str]] = {}
        for label in self.labels:
            groups.setdefault(label.casefold(), []).append(label)
        return [
            f"classes {' and '.join(map(repr, group))} differ only in letter case: each is trained as a "
            "class of its own (rename to merge them)"
            for group in groups.values()
            if len(group) > 1
        ]

    def folds(self) -> list[int]:
        return sorted({c.fold for c in self.clips if c.fold is not None})

    def subset(self, folds: list[int] | None = None, exclude: list[int] | None = None) -> ClipSet:
        keep = [
            c
            for c in self.clips
            if (folds is None or c.fold in folds) and (exclude is None or c.fold not in exclude)
        ]
        return ClipSet(keep, self.labels, self.multi_label, self.name)

    def targets(self) -> np.ndarray:
        """Class indices ``(N,)`` for single-label sets, multi-hot ``(N, C)`` float32 for multi-label ones."""
        if not self.multi_label:
            return np.array([c.targets[0] for c in self.clips], dtype=np.int64)
        y = np.zeros((len(self.clips), len(self.labels)), dtype=np.float32)
        for i, c in enumerate(self.clips):
            y[i, list(c.targets)] = 1.0
        return y


def dataset_name(root: Path) -> str:
    """The name a checkpoint records its ``train --data`` data set by: a CSV's stem, a folder's name."""
    return root.stem if root.is_file() else root.resolve().name
