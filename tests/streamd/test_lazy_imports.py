"""Start-up: the replay and run commands' import chains load no optional heavy module and not torch
(checked in a fresh interpreter), and a bad input is reported before torch is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("rich", "transformers", "sounddevice", "ray", "paho", "prometheus_client", "av", "silero_vad")


def _modules_after(code: str) -> set[str]:
    """Module names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def _imported_after(code: str) -> set[str]:
    """Top-level module names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    return {name.split(".")[0] for name in _modules_after(code)}


def test_import_cli_imports_no_torch_and_nothing_heavy():
    loaded = _imported_after("import streamd.cli")
    assert "torch" not in loaded and not loaded & set(HEAVY)


@pytest.mark.parametrize("command", ["replay", "run"])
def test_a_commands_import_chain_loads_neither_torch_nor_an_optional_heavy_module(command):
    modules = _modules_after(f"import streamd.cli\nstreamd.cli.build_parser([{command!r}])")
    assert f"streamd.commands.{command}" in modules  # the command's module was imported
    loaded = {name.split(".")[0] for name in modules}
    assert "torch" not in loaded and not loaded & set(HEAVY), sorted(loaded & {"torch", *HEAVY})


def test_a_missing_input_is_reported_before_torch_is_imported(tmp_path):
    missing = tmp_path / "missing.wav"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "streamd", "replay", str(missing), "--speed", "max"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = out.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
    assert "streamd.file_source" in imported and "torch" not in imported  # the command ran, without torch
    assert out.returncode == 2 and lines[-1] == f"streamd: error: {missing}: no such file"
