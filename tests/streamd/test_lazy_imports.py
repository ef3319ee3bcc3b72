"""Start-up: the replay and run commands' import chains load no optional heavy module (checked in a fresh
interpreter), and ``import streamd.cli`` alone does not even import torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("rich", "transformers", "sounddevice", "ray", "paho", "prometheus_client", "av", "silero_vad")


def _imported_after(code: str) -> set[str]:
    """Top-level module names in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_cli_imports_no_torch_and_nothing_heavy():
    loaded = _imported_after("import streamd.cli")
    assert "torch" not in loaded and not loaded & set(HEAVY)


@pytest.mark.parametrize("command", ["replay", "run"])
def test_a_commands_import_chain_loads_no_optional_heavy_module(command):
    loaded = _imported_after(f"import streamd.cli\nstreamd.cli.build_parser([{command!r}])")
    assert "torch" in loaded  # the command's module was imported: the check below means something
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
