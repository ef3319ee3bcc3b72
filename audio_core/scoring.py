"""From fbank features to class scores: the one "normalise -> model -> probabilities" and the one top-k.

``scores`` (windows ``(B, T, F)``), ``step_scores`` (one recurrent step) and ``sequence_scores`` (a whole
recurrent sequence at once) take un-normalised log-mel frames, apply the checkpoint's normalisation, run
the model under bf16 autocast when asked (``models.bf16``) and return softmax, or sigmoid for multi-label
models, as float32 on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from models.bf16 import bf16_autocast
from models.common import ModelInfo, is_recurrent

State = dict[str, torch.Tensor]
PRECISIONS = ("fp32", "bf16", "int8")  # int8: the model's linear layers are quantised, no autocast


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Sigmoid (multi-label) or softmax over the last dimension, in float32."""
    logits = logits.float()
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)


def _autocast(batch: torch.Tensor, precision: str):
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return bf16_autocast(batch.device.type, enabled=precision == "bf16")


def scores(
    model: nn.Module, info: ModelInfo, batch: torch.Tensor, *, precision: str = "fp32"
) -> torch.Tensor:
    """Probabilities ``(B, C)`` of un-normalised windows ``(B, T, F)`` (on the model's device).

    int8 scores each window alone: dynamic quantisation scales the activations of the whole call, so a
    window batched with louder ones would score differently than alone (every command must agree); a
    recurrent model's window in int8 is its last step taken column by column, as the daemon steps it."""
    if precision == "int8" and is_recurrent(model):
        return torch.stack([sequence_scores(model, info, window, precision="int8")[-1] for window in batch])
    if precision == "int8" and len(batch) > 1:
        return torch.cat([scores(model, info, window[None], precision=precision) for window in batch])
    with torch.inference_mode(), _autocast(batch, precision):
        return probabilities(model(info.normalization.apply(batch)), info.multi_label).cpu()


def step_scores(
    model: nn.Module, info: ModelInfo, columns: torch.Tensor, state: State, *, precision: str = "fp32"
) -> tuple[torch.Tensor, State]:
    """One recurrent step of B streams: columns ``(B, c, F)`` and their stacked state -> ``(B, C)``, state.

    int8 steps each stream alone (as ``scores`` each window): a stream must not score differently beside
    louder ones."""
    if precision == "int8" and len(columns) > 1:
        parts = [
            step_scores(model, info, columns[b : b + 1], _row(state, b), precision=precision)
            for b in range(len(columns))
        ]
        return torch.cat([out for out, _ in parts]), {
            k: torch.cat([new[k] for _, new in parts]) for k in state
        }
    with torch.inference_mode(), _autocast(columns, precision):
        logits, new_state = model.step(info.normalization.apply(columns), state)
    return probabilities(logits, info.multi_label).cpu(), new_state


def chunk_scores(
    model: nn.Module, info: ModelInfo, chunks: torch.Tensor, state: State, *, precision: str = "fp32"
) -> tuple[torch.Tensor, State]:
    """Several recurrent steps of B streams in one call (catch-up): un-normalised frames ``(B, k * c, F)``
    and their stacked state -> per-column scores ``(B * k, C)`` (stream-major) and the new state.

    int8 takes the columns one step at a time (per stream), so that catching up equals stepping."""
    if precision == "int8":
        c = int(model.column_frames)
        rows = []
        for b in range(len(chunks)):
            one, out = _row(state, b), []
            for i in range(chunks.shape[1] // c):
                scored, one = step_scores(
                    model, info, chunks[b : b + 1, i * c : (i + 1) * c], one, precision="int8"
                )
                out.append(scored)
            rows.append((torch.cat(out), one))
        return torch.cat([out for out, _ in rows]), {k: torch.cat([new[k] for _, new in rows]) for k in state}
    with torch.inference_mode(), _autocast(chunks, precision):
        logits, new_state = model.forward_chunk(info.normalization.apply(chunks), state)
    return probabilities(logits.flatten(0, 1), info.multi_label).cpu(), new_state


def sequence_scores(
    model: nn.Module, info: ModelInfo, fbank: torch.Tensor, *, precision: str = "fp32"
) -> torch.Tensor:
    """A recurrent model over a whole un-normalised fbank ``(T, F)`` at once: per-step scores ``(S, C)``
    (int8: step by step, as the daemon does)."""
    if precision == "int8":
        c = int(model.column_frames)
        columns = fbank.shape[0] // c
        state = model.init_state(1, fbank.device)
        return chunk_scores(model, info, fbank[None, : columns * c], state, precision="int8")[0]
    with torch.inference_mode(), _autocast(fbank, precision):
        logits = model.forward_steps(info.normalization.apply(fbank).unsqueeze(0))[0]
    return probabilities(logits, info.multi_label).cpu()


def _row(state: State, b: int) -> State:
    """Stream ``b``'s part of a stacked state."""
    return {k: v[b : b + 1] for k, v in state.items()}


def top_k(row: np.ndarray | torch.Tensor, labels: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` best ``(label, score)`` of one score row ``(C,)``, best first (ties: lower index first)."""
    values = np.asarray(row.detach().cpu() if isinstance(row, torch.Tensor) else row, dtype=np.float64)
    order = np.argsort(-values, kind="stable")[: max(0, min(k, values.size))]
    return [(labels[i], float(values[i])) for i in order]
