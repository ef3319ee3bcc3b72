"""An experiment's summary: per-run metrics, their mean and std, the pooled confusion matrix (cv), and the
same as a markdown table; the files beside it (``config.json``, an earlier mode's summary kept)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from training import metrics
from training.experiment_spec import Experiment
from training.resume import ResumeMismatch


def _mean_std(values: list[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(present)), "std": float(np.std(present))}


def summarize(exp: Experiment, entries: list[dict[str, Any]], labels: list[str]) -> dict[str, Any]:
    """Per-run metrics, their mean and std, and (cv) the pooled confusion matrix over all folds."""
    summary: dict[str, Any] = {
        "experiment": exp.name,
        "mode": exp.mode,
        "arch": exp.arch,
        "train": asdict(exp.train),
        "runs": [{k: v for k, v in e.items() if k != "report"} for e in entries],
    }
    reports = [e["report"] for e in entries if "report" in e]
    for e in summary["runs"]:
        report = next((x["report"] for x in entries if x["run"] == e["run"] and "report" in x), None)
        if report is not None:
            e.update({k: report[k] for k in ("accuracy", "macro_f1", "mAP")})
    if reports:
        summary["metrics"] = {k: _mean_std([r[k] for r in reports]) for k in ("accuracy", "macro_f1", "mAP")}
        pooled = np.sum([np.array(r["confusion_matrix"]) for r in reports], axis=0)
        summary["pooled_confusion_matrix"] = pooled.tolist()
        summary["pooled_per_class_accuracy"] = dict(
            zip(
                labels,
                [None if np.isnan(v) else float(v) for v in metrics.per_class_accuracy(pooled)],
                strict=True,
            )
        )
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as a markdown table (runs, then mean ± std)."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    lines = [
        f"# {summary['experiment']} ({summary['arch']}, mode {summary['mode']})",
        "",
        "| run | held-out folds | clips | accuracy | macro-F1 | mAP | train s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in summary["runs"]:
        if "val_folds" not in run:  # mode full: nothing held out, so nothing measured (not "n/a")
            lines.append(no_held_out_row(run))
            continue
        folds = ",".join(str(f) for f in run.get("val_folds") or []) or "-"
        lines.append(
            f"| {run['run']} | {folds} | {run.get('val_clips', '-')} | {fmt(run.get('accuracy'))} | "
            f"{fmt(run.get('macro_f1'))} | {fmt(run.get('mAP'))} | {run['train_seconds']:.0f} |"
        )
    if "metrics" in summary:
        m = summary["metrics"]
        cells = " | ".join(
            "n/a" if m[k]["mean"] is None else f"{m[k]['mean']:.4f} ± {m[k]['std']:.4f}"
            for k in ("accuracy", "macro_f1", "mAP")
        )
        lines += ["", f"Mean ± std over runs: accuracy | macro-F1 | mAP = {cells}"]
    for run in summary["runs"]:  # an init checkpoint that trained on held-out clips (training said so)
        if run.get("not_held_out"):
            lines += ["", f"Warning, run {run['run']}: {run['not_held_out']}."]
    if summary["mode"] == "full":
        lines += ["", FULL_MODE_NOTE]
    return "\n".join(lines) + "\n"


FULL_MODE_NOTE = (
    "Mode full trains on every clip and holds none out, so it measures no accuracy: the figures of this "
    "recipe are those of its single or cv runs; score the checkpoint on other data with `streamd evaluate`."
)


def no_held_out_row(run: dict[str, Any]) -> str:
    """The summary row of a run that held nothing out (mode full): its training clips, no figures."""
    return (
        f"| {run['run']} | none (trained on all {run.get('train_clips', '?')} clips) | 0 | not measured | "
        f"not measured | not measured | {run['train_seconds']:.0f} |"
    )


SUMMARY_FILES = ("summary.json", "summary.md", "config.json", "confusion.png")


def keep_other_modes_results(out: Path, mode: str) -> None:
    """Another mode's summary in ``out`` (cv, then ``--mode full`` into the same folder, as the configs
    suggest) is renamed ``summary_<mode>.*`` (with its config and confusion matrix), not overwritten."""
    try:
        earlier = json.loads((out / "summary.json").read_text()).get("mode")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(earlier, str) or earlier == mode:
        return
    for name in SUMMARY_FILES:
        path = out / name
        if path.exists():
            path.replace(out / f"{path.stem}_{earlier}{path.suffix}")
    print(f"{out}: the earlier {earlier} run's summary is kept as summary_{earlier}.md", flush=True)


@contextlib.contextmanager
def recorded_config(path: Path, raw: dict[str, Any]) -> Iterator[None]:
    """Write the experiment's config as read (``config.json``) for the runs inside the block; a run refused
    before it trains (its saved state was made with other settings) puts back the file that was there."""
    before = path.read_bytes() if path.exists() else None
    path.write_text(json.dumps(raw, indent=1, default=str))
    try:
        yield
    except ResumeMismatch:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)
        raise
