"""Classification metrics: accuracy, macro-F1, mAP, per-class accuracy and the confusion matrix (+ PNG).

Targets are either integer class indices ``(N,)`` (single-label) or multi-hot arrays ``(N, C)``
(multi-label); scores are ``(N, C)`` probabilities or logits (only their order matters, except for the
multi-label decision threshold, which applies to probabilities).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np


def as_multi_hot(targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer class indices ``(N,)`` or multi-hot ``(N, C)`` -> boolean ``(N, C)``."""
    targets = np.asarray(targets)
    if targets.ndim == 2:
        if targets.shape[1] != num_classes:
            raise ValueError(f"targets have {targets.shape[1]} classes, scores have {num_classes}")
        return targets > 0.5
    out = np.zeros((targets.shape[0], num_classes), dtype=bool)
    out[np.arange(targets.shape[0]), targets.astype(np.int64)] = True
    return out


def accuracy(targets: np.ndarray, scores: np.ndarray) -> float:
    """Top-1 accuracy: share of rows whose highest score is a true class."""
    scores = np.asarray(scores)
    if scores.shape[0] == 0:
        return float("nan")
    hot = as_multi_hot(targets, scores.shape[1])
    top1 = scores.argmax(axis=1)
    return float(hot[np.arange(scores.shape[0]), top1].mean())


def predictions(scores: np.ndarray, multi_label: bool, threshold: float = 0.5) -> np.ndarray:
    """Boolean ``(N, C)``: the arg-max class (single-label) or ``score >= threshold`` (multi-label)."""
    scores = np.asarray(scores)
    if multi_label:
        return scores >= threshold
    out = np.zeros(scores.shape, dtype=bool)
    out[np.arange(scores.shape[0]), scores.argmax(axis=1)] = True
    return out


def f1_per_class(truth: np.ndarray, decided: np.ndarray) -> np.ndarray:
    """Per-class F1 from boolean ``(N, C)`` truth and decisions; NaN if neither true nor predicted."""
    tp = (truth & decided).sum(axis=0).astype(np.float64)
    fp = (~truth & decided).sum(axis=0).astype(np.float64)
    fn = (truth & ~decided).sum(axis=0).astype(np.float64)
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, np.nan)


def macro_f1(
    targets: np.ndarray, scores: np.ndarray, multi_label: bool = False, threshold: float = 0.5
) -> float:
    """Unweighted mean F1 over the classes that occur in the targets or the predictions."""
    scores = np.asarray(scores)
    truth = as_multi_hot(targets, scores.shape[1])
    per_class = f1_per_class(truth, predictions(scores, multi_label, threshold))
    present = ~np.isnan(per_class)
    return float(per_class[present].mean()) if present.any() else float("nan")


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall step curve of one class (tied scores form one threshold).

    ``truth`` is boolean ``(N,)``; NaN when the class has no positive example.
    """
    truth = np.asarray(truth, dtype=bool)
    num_pos = int(truth.sum())
    if num_pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    hits = np.cumsum(truth[order])
    # last index of every run of equal scores: one threshold per distinct score
    ends = np.r_[np.nonzero(np.diff(sorted_scores))[0], sorted_scores.size - 1]
    tp = hits[ends].astype(np.float64)
    precision = tp / (ends + 1)
    recall_gain = np.diff(np.r_[0.0, tp]) / num_pos
    return float((precision * recall_gain).sum())


def average_precision_per_class(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Average precision of every class ``(C,)`` (NaN for classes without positives)."""
    scores = np.asarray(scores)
    truth = as_multi_hot(targets, scores.shape[1])
    return np.array([average_precision(truth[:, c], scores[:, c]) for c in range(scores.shape[1])])


def mean_average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """mAP: mean of the per-class average precision over classes with at least one positive."""
    ap = average_precision_per_class(targets, scores)
    present = ~np.isnan(ap)
    return float(ap[present].mean()) if present.any() else float("nan")


def confusion_matrix(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``(C, C)`` counts: rows = true class (each of a multi-hot row), columns = top-1 prediction."""
    scores = np.asarray(scores)
    num_classes = scores.shape[1]
    truth = as_multi_hot(targets, num_classes)
    top1 = scores.argmax(axis=1)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    rows, classes = np.nonzero(truth)
    np.add.at(matrix, (classes, top1[rows]), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix (NaN for classes with no example)."""
    support = matrix.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / support, np.nan)


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]


def classification_report(
    targets: np.ndarray, scores: np.ndarray, labels: list[str], multi_label: bool = False
) -> dict[str, Any]:
    """Every metric in one JSON-ready dict (NaN becomes ``None``)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ValueError(f"scores must be (N, {len(labels)}), got {scores.shape}")
    matrix = confusion_matrix(targets, scores)
    ap = average_precision_per_class(targets, scores)
    present = ~np.isnan(ap)
    return {
        "num_examples": int(scores.shape[0]),
        "accuracy": accuracy(targets, scores),
        "macro_f1": macro_f1(targets, scores, multi_label),
        "mAP": float(ap[present].mean()) if present.any() else None,
        "per_class_accuracy": dict(zip(labels, _nan_to_none(per_class_accuracy(matrix)), strict=True)),
        "per_class_ap": dict(zip(labels, _nan_to_none(ap), strict=True)),
        "confusion_matrix": matrix.tolist(),
    }


def plot_confusion_matrix(
    matrix: np.ndarray, labels: list[str], path: str | Path, title: str = ""
) -> Path | None:
    """Draw a row-normalised confusion matrix with counts to a PNG (matplotlib's Agg backend).

    Without matplotlib the PNG is skipped with one line (None returned): never a crash after training.
    """
    try:
        import matplotlib
    except ImportError:
        print(f"{path}: skipped (matplotlib is not installed: pip install -e '.[train]')", flush=True)
        return None

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    matrix = np.asarray(matrix)
    n = len(labels)
    support = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, support, out=np.zeros(matrix.shape, dtype=np.float64), where=support > 0)
    size = max(4.0, 0.28 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    try:
        with warnings.catch_warnings():
            # a label in a script the font lacks is drawn as boxes; the PNG is still written
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
            ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
            ax.set_yticks(range(n), labels, fontsize=7)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            if title:
                ax.set_title(title)
            if n <= 60:
                for i, j in zip(*np.nonzero(matrix), strict=True):
                    color = "white" if share[i, j] > 0.5 else "black"
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6, color=color)
            fig.tight_layout()
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
