"""A recurrent model's clips shorter than its window: trained on their own last steps, not on padding.

A clip shorter than the window is padded with silence at its end (``pad_with_silence``, every command's
rule). A windowed model sees the whole window either way; a recurrent model learns its clip label on its
last steps (``last_steps_logits``), which for such a clip would have heard only the padding, while
classify, evaluate and replay score a short file at its own last real step. So, for a recurrent model's
clip batch (``clip_step``):

- ``end_aligned``: a short row's padding is moved before its audio (the fbank rolled by the padding), so
  that its last steps are the clip's last steps, and it is not shifted in time (``unshifted``: a circular
  shift would put padding after the clip again);
- ``heard_weights``: of the last steps, those whose column ends before the clip begins (nothing of it
  heard yet) get weight 0 in the loss, and each row weighs the same in all (a 0.3-s clip's two steps
  count as much as a whole clip's many: unweighted, a class of 0.4-s clips among whole ones was right
  on 4 of its 8 held-out clips in one run, weighted on 7).

Rows of a whole window (``real_frames`` = the window) are left exactly as before.
"""

from __future__ import annotations

import numpy as np
import torch


def audio_end(frames: int, column: int) -> int:
    """The frame where an end-aligned row's audio ends: the end of the window's last whole column (the
    model leaves out the frames after it)."""
    return frames // column * column


def padding_before(real_frames: np.ndarray, frames: int, column: int) -> torch.Tensor:
    """Frames of padding before each end-aligned row's audio ``(B,)``: 0 for a row that fills every
    column of the window, more than 0 for a short one."""
    end = audio_end(frames, column)
    return torch.as_tensor(np.maximum(end - np.asarray(real_frames), 0), dtype=torch.long)


def end_aligned(x: torch.Tensor, real_frames: np.ndarray, column: int) -> torch.Tensor:
    """``x`` ``(B, T, F)`` with each short row's audio (its first ``real_frames``) moved to end with the
    window's last whole column and its padding moved before it (rows that fill every column: as they are)."""
    t = x.shape[1]
    pad = padding_before(real_frames, t, column)
    idx = (torch.arange(t).unsqueeze(0) - pad.unsqueeze(1)) % t  # (B, T)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand_as(x))


def heard_weights(real_frames: np.ndarray, frames: int, column: int, steps: int) -> torch.Tensor:
    """Weights ``(B, S)`` of the last ``steps`` columns of end-aligned rows of ``frames`` frames: 0 where
    the column ends before the row's audio begins, the others equal and summing to ``steps`` in each row
    (a row that fills every column: all 1)."""
    end = audio_end(frames, column)
    ends = torch.arange(end - (steps - 1) * column, end + 1, column)  # each step's column end
    heard = (ends.unsqueeze(0) > padding_before(real_frames, frames, column).unsqueeze(1)).float()
    return heard * steps / heard.sum(dim=1, keepdim=True)  # every row weighs the same in the loss


def align_short_rows(
    x: torch.Tensor, real_frames: np.ndarray | None, column: int, clip_steps: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """A recurrent model's clip batch ``x`` ``(B, T, F)``: ``(x end-aligned, step weights (B, S), rows not
    to shift)``; a batch with no short row (or no ``real_frames``) comes back as it is, with ``None``s."""
    if real_frames is None or not bool((short := padding_before(real_frames, x.shape[1], column) > 0).any()):
        return x, None, None
    steps = min(x.shape[1] // column, clip_steps)
    return end_aligned(x, real_frames, column), heard_weights(real_frames, x.shape[1], column, steps), short
