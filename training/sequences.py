"""Training sequences for recurrent models: clips joined by background gaps, with a target per step.

A recurrent model runs for hours on one stream, so it must learn to let a sound go and take up the next:
trained only on isolated clips from a zero state it never sees a state that still holds the previous
sound. Here each training example is a stream: clips from the training set one after another, separated
by random gaps, over a quiet pink-noise background at a random level — built in the feature domain
(log-mel power adds as ``logaddexp``), as ``training.soundscape`` builds soundscapes from waveforms.

With ``mix_prob`` > 0 (``StreamMixing``: that share, and ``[train.augment]``'s ``mixing`` and ``mixup_alpha``)
a clip placed in a stream is, at that rate, first mixed with a partner clip from the whole training set
(between-class: of another class) by the rule the clip batches use (``training.augment``), and its steps
learn the mixed target ``r · t1 + (1 − r) · t2`` — labels and teacher probabilities alike.

With ``prefix_targets`` (a teacher's probabilities for each clip's first k + 1 columns, ``(N, K, C)``:
``training.distill`` "prefix" stream targets) the last C entries of a step's target row are those of the
prefix the step has heard: the clip's frames up to the step's last frame over it, in whole columns (a
first step that has heard less than one column, at least half of it, learns the first column's), the
whole clip once all of it has been heard.

The target of a step (one column of ``column_frames`` frames) is the label of the clip whose audible part
covers at least half of the column — the rule ``training.soundscape_scoring.window_truth`` scores a recurrent
model's steps by; steps over background have no target and no loss. A clip's audible part runs from its
first to its last frame within ``audible_db`` of its loudest frame (frame power: the sum over mel bins).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from audio_core.checks import check_fields, rule
from models.common import FeatureConfig
from training.augment import bc_log_shares, label_shares, mixup_log_shares, power_mix

LOG_FLOOR = math.log(np.finfo(np.float32).eps)  # the fbank's floor: log(eps)


NOISE_KINDS = ("white", "pink", "brown", "hum50", "hum60")  # training.background kinds a level scales


@dataclass
class SequenceConfig:
    """The ``[train.sequences]`` table; each field's bounds and choices sit next to it."""

    length_s: float = rule(0.0, ge=0)  # 0: train on single clips; else on streams of this length
    gap_min_s: float = rule(0.2, ge=0)
    gap_max_s: float = rule(3.0, ge=0)
    background_min_dbfs: float = rule(-65.0, le=0)
    background_max_dbfs: float = rule(-40.0, le=0)
    audible_db: float = rule(35.0, gt=0)
    # "ignore": no target; "no_class": learn the uniform "nothing" there
    background_steps: str = rule("ignore", choices=("ignore", "no_class"))
    background_kinds: list[str] = field(default_factory=lambda: ["pink"])  # the gaps' noises, of NOISE_KINDS
    # share of clips mixed with a partner before they are placed ([train.augment] mixing and mixup_alpha say
    # how; its mixup_prob is for clip batches): opt-in, as streams ignored [train.augment]'s mixing before
    mix_prob: float = rule(0.0, ge=0, le=1)
    # the first onset_s of each clip's audible part weigh onset_weight times a step's share of the loss:
    # a stream's model must name a new sound soon after it starts, not only once it has heard it all
    onset_s: float = rule(0.0, ge=0)
    onset_weight: float = rule(1.0, ge=1)

    def __post_init__(self) -> None:
        check_fields(self, "train.sequences", ValueError)
        for low, high in (("gap_min_s", "gap_max_s"), ("background_min_dbfs", "background_max_dbfs")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"train.sequences.{low} must not exceed {high}, got {getattr(self, low)!r} > "
                    f"{getattr(self, high)!r}"
                )
        if not self.background_kinds or any(kind not in NOISE_KINDS for kind in self.background_kinds):
            raise ValueError(
                f"train.sequences.background_kinds must be a non-empty list of {', '.join(NOISE_KINDS)}, "
                f"got {self.background_kinds!r}"
            )

    @property
    def enabled(self) -> bool:
        return self.length_s > 0

    @property
    def weighs_onsets(self) -> bool:
        """Whether ``onset_s`` and ``onset_weight`` weigh any step more than another."""
        return self.onset_s > 0 and self.onset_weight != 1.0


def audible_frames(fbank: np.ndarray, audible_db: float) -> tuple[int, int]:
    """``[first, last + 1)`` of the frames within ``audible_db`` of the loudest; ``(0, 0)`` if all silent."""
    power = np.logaddexp.reduce(np.asarray(fbank, dtype=np.float64), axis=1)  # log of the frame's power
    floor = LOG_FLOOR + math.log(fbank.shape[1]) + 1e-3  # every bin at the floor: digital silence
    if power.size == 0 or power.max() <= floor:
        return 0, 0
    loud = np.nonzero(power >= power.max() - audible_db * math.log(10) / 10)[0]
    return int(loud[0]), int(loud[-1]) + 1


def noise_bank(
    features: FeatureConfig, seconds: float = 30.0, seed: int = 0, kinds: tuple[str, ...] = ("pink",)
) -> np.ndarray:
    """Fbank frames of unit-RMS (0 dBFS) noise, ``seconds`` of each of ``kinds`` back to back (kinds of
    ``training.background``); a level ``L`` dBFS adds ``L ln(10) / 10``."""
    from audio_core.fbank import compute_fbank
    from training.background import background_wave

    rng = np.random.default_rng(seed)
    n = round(seconds * features.sample_rate)
    parts = [background_wave(kind, n, features.sample_rate, 0.0, rng) for kind in kinds]
    return np.concatenate([compute_fbank(p.astype(np.float32), features).numpy() for p in parts])


@dataclass(frozen=True)
class StreamMixing:
    """How clips are mixed before they are placed in a stream: ``kind`` "mixup" or "bc", the share
    ``prob`` of clips mixed, mixup's ``alpha``; ``classes`` (N,) per clip, ``gains_db`` (N,) per clip
    (``training.augment.clip_gain_db``; between-class only)."""

    kind: str
    prob: float
    alpha: float
    classes: np.ndarray
    gains_db: torch.Tensor | None = None


class SequenceBuilder:
    """Makes batches of training streams from clips' un-normalised fbanks ``(N, T, F)``."""

    def __init__(
        self,
        x: np.ndarray,
        targets: torch.Tensor,
        cfg: SequenceConfig,
        column_frames: int,
        frame_rate: float,
        noise: np.ndarray,
        gain_db: float = 0.0,
        mixing: StreamMixing | None = None,
        prefix_targets: torch.Tensor | None = None,
    ) -> None:
        self.x = x
        self.targets = targets  # (N, C) soft / multi-hot targets per clip
        self.prefix_targets = prefix_targets  # (N, K, C'): the last C' target entries per heard prefix
        self.cfg = cfg
        self.column = column_frames
        self.steps = max(1, round(cfg.length_s * frame_rate / column_frames))
        self.frames = self.steps * column_frames
        self.frame_rate = frame_rate
        self.noise = noise
        self.gain_db = gain_db
        self.spans = [audible_frames(clip, cfg.audible_db) for clip in x]
        self.mixing = mixing if mixing is not None and mixing.prob > 0 else None
        self._mixed_targets: list[torch.Tensor] = []  # this batch's mixed clips' target rows
        self._mixed_prefixes: list[torch.Tensor] = []  # and their prefix targets (K, C')

    def clips_per_sequence(self) -> float:
        """The mean number of clips a sequence holds."""
        gap = 0.5 * (self.cfg.gap_min_s + self.cfg.gap_max_s) * self.frame_rate
        return max(1.0, self.frames / (self.x.shape[1] + gap))

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches for each clip to be seen about once."""
        return max(1, round(len(self.x) / (batch_size * self.clips_per_sequence())))

    def batch(
        self, size: int, clips: Iterator[int], gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``size`` sequences drawing clips from ``clips`` -> fbank ``(B, T, F)`` (un-normalised),
        per-step targets ``(B, S, C)``, a mask ``(B, S)`` of the steps that have one and each step's
        loss weight ``(B, S)`` (``onset_weight`` over a clip's first ``onset_s``, else 1)."""
        self._mixed_targets, self._mixed_prefixes = [], []
        fbanks, owners, places = zip(*(self._sequence(clips, gen) for _ in range(size)), strict=True)
        x = torch.from_numpy(np.stack(fbanks))
        owner = torch.from_numpy(np.stack(owners))  # (B, T): target row per frame, -1 for background
        step_owner = majority_owner(owner.view(size, self.steps, self.column))
        mask = step_owner >= 0
        table = torch.cat([self.targets, *[row.unsqueeze(0) for row in self._mixed_targets]])
        y = torch.zeros(size, self.steps, self.targets.shape[1])
        y[mask] = table[step_owner[mask]]
        if self.prefix_targets is not None:
            place = torch.from_numpy(np.stack(places))  # (B, T): frame's place in its clip
            self._prefix_rows(y, mask, step_owner, owner, place)
        return x, y, mask, self._onset_weights(step_owner)

    def _prefix_rows(
        self, y: torch.Tensor, mask: torch.Tensor, step_owner: torch.Tensor, owner: torch.Tensor,
        place: torch.Tensor,
    ) -> None:  # fmt: skip
        """Set the last C' entries of the steps' targets ``y`` to the prefixes they have heard."""
        assert self.prefix_targets is not None
        size, steps, column = y.shape[0], self.steps, self.column
        own = owner.view(size, steps, column) == step_owner.unsqueeze(-1)  # frames of the step's clip
        heard = torch.where(own, place.view(size, steps, column) + 1, torch.zeros_like(place).view_as(own))
        heard = heard.max(dim=-1).values
        last = self.prefix_targets.shape[1] - 1  # the whole clip, once all of it has been heard
        prefix = torch.where(heard >= self.x.shape[1], last, (heard // column - 1).clamp(0, last))
        table = torch.cat([self.prefix_targets, *[p.unsqueeze(0) for p in self._mixed_prefixes]])
        width = table.shape[-1]
        y[..., -width:][mask] = table[step_owner[mask], prefix[mask]]

    def _onset_weights(self, step_owner: torch.Tensor) -> torch.Tensor:
        """``onset_weight`` for the steps within ``onset_s`` of the start of their clip's run of steps."""
        weights = torch.ones(step_owner.shape)
        if not self.cfg.weighs_onsets:
            return weights
        onset_frames = round(self.cfg.onset_s * self.frame_rate)  # whole frames: 1.12 s is 7 steps, not 8
        onset_steps = -(-onset_frames // self.column)
        starts = torch.ones_like(step_owner, dtype=torch.bool)
        starts[:, 1:] = step_owner[:, 1:] != step_owner[:, :-1]
        index = torch.arange(step_owner.shape[1]).expand_as(step_owner)
        run_start = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=1).values
        early = (index - run_start < onset_steps) & (step_owner >= 0)
        weights[early] = self.cfg.onset_weight
        return weights

    def _placed_clip(self, index: int, gen: torch.Generator) -> tuple[np.ndarray, int, tuple[int, int]]:
        """Clip ``index`` as placed: ``(fbank, target row, audible span)``; mixed with a partner at the
        mixing rate, its target row then one of this batch's mixed rows (after the clips' own)."""
        mixing = self.mixing
        if mixing is None or float(torch.rand((), generator=gen)) >= mixing.prob:
            return self.x[index], index, self.spans[index]
        if mixing.kind == "bc":
            others = np.flatnonzero(mixing.classes != mixing.classes[index])
        else:
            others = np.flatnonzero(np.arange(len(self.x)) != index)
        if others.size == 0:
            return self.x[index], index, self.spans[index]
        partner = int(others[int(torch.randint(0, others.size, (), generator=gen))])
        share = label_shares(mixing.kind, mixing.alpha, 1, gen)
        if mixing.kind == "bc" and mixing.gains_db is not None:
            log_shares = bc_log_shares(share, mixing.gains_db[index], mixing.gains_db[partner])
        else:
            log_shares = mixup_log_shares(share)
        first, second = torch.from_numpy(self.x[index]), torch.from_numpy(self.x[partner])
        clip = power_mix(first, second, *log_shares).numpy()
        self._mixed_targets.append(share * self.targets[index] + (1 - share) * self.targets[partner])
        if self.prefix_targets is not None:  # the two clips start together: mixed prefix by prefix
            mixed = share * self.prefix_targets[index] + (1 - share) * self.prefix_targets[partner]
            self._mixed_prefixes.append(mixed)
        row = len(self.targets) + len(self._mixed_targets) - 1
        return clip, row, audible_frames(clip, self.cfg.audible_db)

    def _uniform(self, low: float, high: float, gen: torch.Generator) -> float:
        return low + (high - low) * float(torch.rand((), generator=gen))

    def _sequence(
        self, clips: Iterator[int], gen: torch.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One stream: fbank ``(T, F)``, each frame's target row (-1: background) and its place in its
        clip (frames from the clip's start)."""
        cfg = self.cfg
        level = self._uniform(cfg.background_min_dbfs, cfg.background_max_dbfs, gen)
        offset = int(torch.randint(0, len(self.noise), (), generator=gen))
        rows = (offset + np.arange(self.frames)) % len(self.noise)
        seq = self.noise[rows] + level * math.log(10) / 10
        owner = np.full(self.frames, -1, dtype=np.int64)
        place = np.zeros(self.frames, dtype=np.int64)
        cursor = round(self._uniform(0.0, cfg.gap_max_s, gen) * self.frame_rate)  # the stream's lead
        while cursor < self.frames:
            clip, row, (first, end) = self._placed_clip(next(clips), gen)
            gain = self._uniform(-self.gain_db, self.gain_db, gen) * math.log(10) / 10
            n = min(len(clip), self.frames - cursor)
            seq[cursor : cursor + n] = np.logaddexp(seq[cursor : cursor + n], clip[:n] + gain)
            owner[cursor + first : cursor + min(end, n)] = row
            place[cursor : cursor + n] = np.arange(n)
            gap = self._uniform(cfg.gap_min_s, cfg.gap_max_s, gen)
            cursor += len(clip) + round(gap * self.frame_rate)
        return np.maximum(seq, LOG_FLOOR).astype(np.float32), owner, place


def majority_owner(columns: torch.Tensor) -> torch.Tensor:
    """``(..., K)`` clip index per frame -> ``(...)``: the clip holding at least half the frames, or -1."""
    same = (columns.unsqueeze(-1) == columns.unsqueeze(-2)).sum(-1)  # (..., K): frames sharing this owner
    same = torch.where(columns >= 0, same, torch.zeros_like(same))
    count, at = same.max(dim=-1)
    owner = columns.gather(-1, at.unsqueeze(-1)).squeeze(-1)
    return torch.where(2 * count >= columns.shape[-1], owner, torch.full_like(owner, -1))


def cycle_permutations(n: int, gen: torch.Generator) -> Iterator[int]:
    """Clip indices in a fresh random order each pass, forever."""
    while True:
        yield from torch.randperm(n, generator=gen).tolist()
