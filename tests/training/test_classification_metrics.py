"""Metrics against plain per-definition references, on seeded random data with ties."""

from __future__ import annotations

import numpy as np
import pytest

from training import metrics


def _ap_reference(truth: np.ndarray, scores: np.ndarray) -> float:
    """AP by definition: sum over distinct thresholds of precision × recall increase."""
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(scores.tolist()), reverse=True):
        chosen = scores >= t
        tp = int((chosen & truth).sum())
        precision = tp / int(chosen.sum())
        recall = tp / int(truth.sum())
        ap += precision * (recall - prev_recall)
        prev_recall = recall
    return ap


def _f1_reference(truth: np.ndarray, decided: np.ndarray) -> list[float]:
    out = []
    for c in range(truth.shape[1]):
        tp = sum(1 for i in range(truth.shape[0]) if truth[i, c] and decided[i, c])
        fp = sum(1 for i in range(truth.shape[0]) if not truth[i, c] and decided[i, c])
        fn = sum(1 for i in range(truth.shape[0]) if truth[i, c] and not decided[i, c])
        out.append(float("nan") if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    return out


def test_average_precision_matches_definition_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = rng.random(40) < 0.3
        truth[0] = True
        scores = rng.integers(0, 6, size=40).astype(float)  # many ties
        assert metrics.average_precision(truth, scores) == pytest.approx(_ap_reference(truth, scores))


def test_average_precision_hand_worked() -> None:
    # ranked: pos, neg, pos -> precisions at the hits 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    truth = np.array([True, False, True])
    scores = np.array([0.9, 0.5, 0.1])
    assert metrics.average_precision(truth, scores) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(metrics.average_precision(np.zeros(3, dtype=bool), scores))


def test_single_label_metrics_agree_with_references() -> None:
    rng = np.random.default_rng(1)
    n, c = 60, 5
    targets = rng.integers(0, c, size=n)
    scores = rng.random((n, c))
    scores[np.arange(n)[:30], targets[:30]] += 1.0  # half of them right for sure
    top1 = scores.argmax(axis=1)
    assert metrics.accuracy(targets, scores) == pytest.approx(float((top1 == targets).mean()))

    cm = metrics.confusion_matrix(targets, scores)
    ref = np.zeros((c, c), dtype=int)
    for t, p in zip(targets, top1, strict=True):
        ref[t, p] += 1
    np.testing.assert_array_equal(cm, ref)
    assert cm.sum() == n
    per_class = metrics.per_class_accuracy(cm)
    for k in range(c):
        assert per_class[k] == pytest.approx(float((top1[targets == k] == k).mean()))

    truth = metrics.as_multi_hot(targets, c)
    decided = metrics.predictions(scores, multi_label=False)
    assert metrics.macro_f1(targets, scores) == pytest.approx(
        float(np.nanmean(_f1_reference(truth, decided)))
    )


def test_multi_label_metrics() -> None:
    rng = np.random.default_rng(2)
    truth = rng.random((50, 4)) < 0.4
    truth[0] = True
    probs = np.clip(truth * 0.4 + rng.random((50, 4)) * 0.6, 0, 1)
    expected_map = np.mean([_ap_reference(truth[:, k], probs[:, k]) for k in range(4)])
    assert metrics.mean_average_precision(truth.astype(float), probs) == pytest.approx(expected_map)
    decided = probs >= 0.5
    assert metrics.macro_f1(truth.astype(float), probs, multi_label=True) == pytest.approx(
        float(np.nanmean(_f1_reference(truth, decided)))
    )
    top_hit = truth[np.arange(50), probs.argmax(axis=1)].mean()
    assert metrics.accuracy(truth.astype(float), probs) == pytest.approx(top_hit)


def test_perfect_and_absent_classes() -> None:
    targets = np.array([0, 1, 1, 0])
    scores = np.eye(3)[[0, 1, 1, 0]]
    report = metrics.classification_report(targets, scores, ["a", "b", "c"])
    assert report["accuracy"] == 1.0
    assert report["macro_f1"] == 1.0  # class c is neither true nor predicted: left out
    assert report["mAP"] == 1.0
    assert report["per_class_accuracy"] == {"a": 1.0, "b": 1.0, "c": None}
    assert report["confusion_matrix"] == [[2, 0, 0], [0, 2, 0], [0, 0, 0]]


def test_report_rejects_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="scores must be"):
        metrics.classification_report(np.array([0]), np.ones((1, 3)), ["a", "b"])


def test_confusion_matrix_png(tmp_path) -> None:
    from matplotlib import image

    cm = np.array([[3, 1], [0, 4]])
    path = metrics.plot_confusion_matrix(cm, ["dog", "rain"], tmp_path / "cm.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] >= 300 and pixels.shape[1] >= 300
    assert pixels[..., :3].std() > 0.05  # not a blank image


def test_a_label_the_font_cannot_draw_gives_a_png_and_no_warning(tmp_path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning (matplotlib's missing glyph) fails the test
        path = metrics.plot_confusion_matrix(np.eye(2, dtype=int), ["雨", "dog"], tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
