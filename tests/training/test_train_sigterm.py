"""``streamd train`` stopped with SIGTERM (a service stopped, ``kill PID``) ends as Ctrl-C ends it: the
note that says which training state is saved and how to resume, exit 130, and a rerun resumes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from esc50_subset import write_esc50_subset, write_experiment

REPO = Path(__file__).resolve().parents[2]


def _config(root: Path, esc50_root: Path, epochs: int) -> Path:
    csv_path = write_esc50_subset(root, ("dog", "rooster"), 1, (1, 2))
    tables = f"""
[model]
arch = "resnet_cnn"
[model.config]
channels = [4, 8]
dropout = 0.0
[train]
epochs = {epochs}
batch_size = 2
precision = "fp32"
eval_every = 0
"""
    return write_experiment(root / "tiny.toml", csv_path, esc50_root / "audio", root / "run", tables=tables)


def _train(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "streamd", "train", str(config), "--no-progress", *extra]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])  # SIGHUP: its terminal closed
def test_sigterm_and_sighup_end_training_as_ctrl_c_and_the_rerun_resumes(
    esc50_root: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    if signal.getsignal(sig) == signal.SIG_IGN:  # under nohup: inherited, and left ignored on purpose
        pytest.skip(f"{sig.name} is ignored here")
    config = _config(tmp_path, esc50_root, epochs=2000)  # far more than it runs before the signal
    state = tmp_path / "run" / "full" / "train_state.safetensors"
    proc = subprocess.Popen(
        _train(config), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 240
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state.exists(), "no training state was saved"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert "Traceback" not in err, err
    note = out.strip().splitlines()[-1]
    found = re.fullmatch(
        rf"interrupted: training state after epoch (\d+) is saved in {re.escape(str(state))}; "
        r"run the same command again to resume \(--fresh starts over\)",
        note,
    )
    assert found, out
    epoch = int(found.group(1))
    again = subprocess.run(
        _train(config, "--set", f"train.epochs={epoch + 1}"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert f"resuming from epoch {epoch} of {epoch + 1}" in again.stdout, again.stdout
