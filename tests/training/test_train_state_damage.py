"""A training state damaged on disk (cut short, overwritten, or another safetensors file in its place) was
an internal error on resuming (``SafetensorError``, ``KeyError: 'state'``): it is one line naming the file
and ``--fresh``, and a whole state still resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from training.ema import Ema
from training.resume import ResumeMismatch
from training.train_state import load_state, save_state


def _parts() -> tuple[torch.nn.Module, Ema, torch.optim.Optimizer, torch.Generator]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.ones(2, 4)).sum().backward()
    opt.step()
    return model, Ema(model, 0.9), opt, torch.Generator().manual_seed(1)


def test_a_damaged_state_is_one_line_and_a_whole_one_resumes(tmp_path: Path) -> None:
    path = tmp_path / "train_state.safetensors"
    model, ema, opt, gen = _parts()
    save_state(path, model, ema, opt, gen, 3, 30, 12.5, [{"epoch": 3, "loss": 1.0}])
    whole = path.read_bytes()
    assert load_state(path, *_parts())[:3] == (3, 30, 12.5)
    for data in (whole[: len(whole) // 2], b"\x00\x01not a state" * 100):  # cut short; overwritten
        path.write_bytes(data)
        with pytest.raises(ResumeMismatch, match=r"not a readable training state .*start over with --fresh"):
            load_state(path, *_parts())
    save_file({"w": torch.zeros(2)}, str(path))  # another safetensors file: no state in its metadata
    with pytest.raises(ResumeMismatch, match=rf"{path}: not a readable training state"):
        load_state(path, *_parts())
