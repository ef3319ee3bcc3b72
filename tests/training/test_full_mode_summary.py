"""Mode full holds nothing out: its summary says so instead of ending with a row of ``n/a``."""

from __future__ import annotations

import json
from pathlib import Path

from training.experiment_summary import FULL_MODE_NOTE


def test_full_mode_summary_says_nothing_was_held_out(trained_checkpoint: Path) -> None:
    out = trained_checkpoint.parent.parent  # the experiment's output_dir (mode full, 12 real clips)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "full" and "metrics" not in summary
    text = (out / "summary.md").read_text()
    assert "n/a" not in text
    rows = [line for line in text.splitlines() if line.startswith("| full |")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[:6] == ["full", "none (trained on all 12 clips)", "0", *["not measured"] * 3]
    assert int(cells[6]) == round(summary["runs"][0]["train_seconds"])
    assert text.rstrip().endswith(FULL_MODE_NOTE)
