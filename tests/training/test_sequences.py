"""Training streams for recurrent models: layout, per-step targets, and a training run on real clips."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from esc50_subset import small_esc50_rows

from audio_core.fbank import compute_fbank
from models.common import FeatureConfig, ModelInfo, Normalization
from models.registry import build_model
from training.augment import AugmentConfig
from training.cache import cached_fbanks
from training.clips import Clip
from training.loop import train_model
from training.sequences import (
    LOG_FLOOR,
    SequenceBuilder,
    SequenceConfig,
    StreamMixing,
    audible_frames,
    cycle_permutations,
    majority_owner,
    noise_bank,
)
from training.soundscape import Event, pink_noise
from training.soundscape_scoring import window_truth
from training.train_config import TrainConfig

FEATURES = FeatureConfig(num_mel_bins=32)
LABELS = ["dog", "rooster", "rain"]


def _silence_with_sound(start: int, end: int, frames: int = 200, bins: int = 32) -> np.ndarray:
    clip = np.full((frames, bins), LOG_FLOOR, np.float32)
    clip[start:end] = 1.0
    return clip


def test_audible_frames_bound_the_loud_part() -> None:
    clip = _silence_with_sound(40, 90)
    clip[120] = 1.0 - 50 * math.log(10) / 10  # 50 dB below the peak: not audible
    assert audible_frames(clip, 35.0) == (40, 90)
    assert audible_frames(np.full((50, 32), LOG_FLOOR, np.float32), 35.0) == (0, 0)


def test_the_noise_bank_is_pink_noise_at_0_dbfs() -> None:
    bank = noise_bank(FEATURES, seconds=2.0)
    level = -50.0
    wave = pink_noise(32000, np.random.default_rng(0)) * 10 ** (level / 20)
    direct = compute_fbank(wave.astype(np.float32), FEATURES).numpy()
    np.testing.assert_allclose(bank + level * math.log(10) / 10, direct, atol=2e-3)


def test_the_noise_bank_holds_each_background_kind_at_0_dbfs() -> None:
    """White, pink and brown back to back, each equal to ``training.background``'s wave at a level."""
    from training.background import background_wave

    bank = noise_bank(FEATURES, seconds=2.0, seed=3, kinds=("white", "pink", "brown"))
    frames = len(bank) // 3
    rng, level = np.random.default_rng(3), -20.0  # loud enough that no bin reaches the log floor
    white = background_wave("white", 32000, 16000, level, rng)
    pink = pink_noise(32000, rng) * 10 ** (level / 20)
    brown = background_wave("brown", 32000, 16000, level, rng)
    for i, wave in enumerate((white, pink, brown)):
        direct = compute_fbank(wave.astype(np.float32), FEATURES).numpy()
        part = bank[i * frames : (i + 1) * frames] + level * math.log(10) / 10
        np.testing.assert_allclose(part, direct, atol=2e-3)
    tilt = [float(part[:, :8].mean() - part[:, -8:].mean()) for part in np.split(bank, 3)]
    assert tilt[0] < tilt[1] < tilt[2]  # white, pink, brown: ever more energy low than high
    with pytest.raises(ValueError, match="background_kinds"):
        SequenceConfig(length_s=30.0, background_kinds=["silence"])


def test_majority_owner_needs_half_the_column() -> None:
    columns = torch.tensor([[3, 3, 3, -1], [3, 3, -1, -1], [3, -1, -1, -1], [-1, -1, -1, -1], [1, 1, 2, 2]])
    assert majority_owner(columns).tolist() == [3, 3, -1, -1, 1]


def test_step_targets_follow_the_soundscape_truth_rule() -> None:
    x = np.stack([_silence_with_sound(30, 170), _silence_with_sound(10, 60), _silence_with_sound(0, 200)])
    targets = torch.eye(3)
    cfg = SequenceConfig(length_s=12.0, gap_min_s=0.3, gap_max_s=1.5)
    builder = SequenceBuilder(x, targets, cfg, 16, 100.0, noise_bank(FEATURES, 5.0), gain_db=0.0)
    gen = torch.Generator().manual_seed(1)
    fbank, y, mask, weights = builder.batch(3, cycle_permutations(3, gen), gen)
    assert bool((weights == 1).all())  # no onset weighting unless asked
    assert fbank.shape == (3, 1200, 32) and y.shape == (3, 75, 3) and mask.shape == (3, 75)
    assert bool(mask.any()) and not bool(mask.all())
    assert float(fbank.min()) >= LOG_FLOOR - 1e-6
    for i in range(3):
        # recover the events from the loud frames (sound at 1.0, background far below) and re-score
        loud = (fbank[i] > -1.0).all(dim=1).numpy()
        edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(int), [0]])))
        events = [
            Event("", a / 100, b / 100, a / 100, b / 100)
            for a, b in zip(edges[::2], edges[1::2], strict=True)
        ]
        for s in range(75):
            truth = window_truth(events, s * 0.16, (s + 1) * 0.16)
            assert bool(mask[i, s]) == (truth is not None), (i, s)


def test_a_recurrent_model_learns_from_streams_of_real_clips(esc50_root: Path, tmp_path: Path) -> None:
    sequences = SequenceConfig(length_s=9.0, gap_min_s=0.2, gap_max_s=1.0)
    _, _, result = _stream_trained(esc50_root, tmp_path, sequences)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.7 * losses[0]
    assert result.history[-1]["train_acc"] > 0.6


def test_streams_are_only_for_recurrent_models(tmp_path: Path) -> None:
    config = {"num_classes": 3, "num_mel_bins": 32, "channels": [8, 16]}
    info = ModelInfo("resnet_cnn", config, LABELS, FEATURES, Normalization(target_frames=100))
    x = np.zeros((3, 100, 32), np.float32)
    cfg = TrainConfig(epochs=1, batch_size=2, sequences=SequenceConfig(length_s=5.0))
    with pytest.raises(ValueError, match="recurrent"):
        train_model(build_model("resnet_cnn", config), (x, np.arange(3)), None, cfg, info, tmp_path)


def test_streams_of_silent_clips_leave_the_model_untouched(tmp_path: Path) -> None:
    config = {"num_classes": 3, "num_mel_bins": 32, "d_model": 16, "n_layers": 1}
    info = ModelInfo("streaming_mamba", config, LABELS, FEATURES, Normalization(target_frames=100))
    torch.manual_seed(0)
    model = build_model("streaming_mamba", config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = np.full((4, 100, 32), LOG_FLOOR, np.float32)  # digital silence: no step has a target
    cfg = TrainConfig(epochs=1, batch_size=2, precision="fp32", sequences=SequenceConfig(length_s=3.0))
    result = train_model(model, (x, np.arange(4) % 3), None, cfg, info, tmp_path, progress=False)
    assert result.history[-1]["loss"] == 0.0
    assert result.history[-1]["skipped_batches"] > 0  # counted, not silently dropped
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


def _stream_trained(
    esc50_root: Path,
    tmp_path: Path,
    sequences: SequenceConfig,
    augment: AugmentConfig | None = None,
    epochs: int = 12,
) -> tuple[Any, ModelInfo, Any]:
    """A small streaming Mamba trained ``epochs`` on streams of nine real clips (three classes)."""
    rows = small_esc50_rows(tuple(LABELS), 3, (1,))
    clips = [Clip(esc50_root / "audio" / r["filename"], (LABELS.index(r["category"]),), 1) for r in rows]
    norm = Normalization(mean=-6.0, std=5.5, target_frames=300)
    x = cached_fbanks(clips, FEATURES, None, norm.target_frames)
    y = np.array([c.targets[0] for c in clips])
    config = {"num_classes": 3, "num_mel_bins": 32, "d_model": 32, "n_layers": 1, "dropout": 0.0}
    torch.manual_seed(0)
    model = build_model("streaming_mamba", config)
    info = ModelInfo("streaming_mamba", config, LABELS, FEATURES, norm)
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=4,
        lr=5e-3,
        warmup_epochs=1.0,
        precision="fp32",
        eval_every=0,
        label_smoothing=0.0,
        augment=augment or AugmentConfig(mixup_prob=0.0, gain_db=3.0, freq_mask=4, time_mask=10),
        sequences=sequences,
    )
    out = tmp_path / sequences.background_steps
    return model, info, train_model(model, (x, y), None, cfg, info, out, progress=False)


def test_background_steps_learn_no_class_on_quiet_noise(esc50_root: Path, tmp_path: Path) -> None:
    """With ``background_steps = "no_class"`` the gaps between clips teach "nothing": on a stream of quiet
    pink noise alone the model stays far from any class (no events), while still learning the clips."""
    rng = np.random.default_rng(0)
    noise = pink_noise(12 * 16000, rng) * 10 ** (-50 / 20)  # 12 s at -50 dBFS
    fbank = compute_fbank(noise.astype(np.float32), FEATURES)
    top = {}
    for mode in ("ignore", "no_class"):
        sequences = SequenceConfig(length_s=9.0, gap_min_s=0.5, gap_max_s=2.0, background_steps=mode)
        model, info, result = _stream_trained(esc50_root, tmp_path, sequences)
        train_acc = result.history[-1]["train_acc"]
        assert train_acc > 0.5, (mode, train_acc)
        model.eval()
        with torch.no_grad():
            probs = torch.softmax(model.forward_steps(info.normalization.apply(fbank).unsqueeze(0))[0], -1)
        top[mode] = float(probs[5:].max())  # after the first second
    assert top["no_class"] < 0.5 <= top["ignore"] or top["no_class"] < 0.6 * top["ignore"], top
    assert top["no_class"] < 0.5, top


def _mixing_builder(kind: str, prob: float) -> SequenceBuilder:
    """Three clips of three classes, each loud over a different stretch, and one-hot targets."""
    x = np.stack([_silence_with_sound(30, 170), _silence_with_sound(10, 60), _silence_with_sound(0, 200)])
    x[1] += 2.0  # clip 1 is louder: between-class mixing balances the gains
    classes = np.arange(3)
    gains = torch.tensor([0.0, 8.7, 0.0]) if kind == "bc" else None
    mixing = StreamMixing(kind, prob, 0.5, classes, gains)
    cfg = SequenceConfig(length_s=12.0, gap_min_s=0.3, gap_max_s=1.5)
    return SequenceBuilder(x, torch.eye(3), cfg, 16, 100.0, noise_bank(FEATURES, 5.0), 0.0, mixing)


@pytest.mark.parametrize("kind", ["mixup", "bc"])
def test_mixed_clips_in_streams_carry_the_mixed_target(kind: str) -> None:
    """Every clip mixed (prob 1): each step over a clip learns two classes whose shares sum to one, and
    a mixup clip's power is the target-weighted sum of its two clips' powers."""
    builder = _mixing_builder(kind, 1.0)
    gen = torch.Generator().manual_seed(2)
    _, y, mask, _ = builder.batch(3, cycle_permutations(3, gen), gen)
    rows = y[mask]
    assert rows.shape[0] > 0
    torch.testing.assert_close(rows.sum(1), torch.ones(rows.shape[0]))
    assert bool(((rows > 0).sum(1) == 2).all())  # a partner of another class, always
    gen = torch.Generator().manual_seed(5)
    clip, row, span = builder._placed_clip(0, gen)
    target = builder._mixed_targets[row - 3]
    share, partner = float(target[0]), int(torch.topk(target, 2).indices[1])
    assert partner in (1, 2) and span == audible_frames(clip, 35.0)
    if kind == "mixup":
        assert share >= 0.5
        expected = share * np.exp(builder.x[0]) + (1 - share) * np.exp(builder.x[partner])
        np.testing.assert_allclose(np.exp(clip), expected, rtol=1e-4)


def test_onset_weights_cover_each_clips_first_steps() -> None:
    """``onset_s`` 0.5 at 16-frame steps of 10 ms: the first 4 steps of each clip's run weigh
    ``onset_weight``; later steps of the clip and background steps weigh 1."""
    x = np.stack([_silence_with_sound(30, 170), _silence_with_sound(10, 60), _silence_with_sound(0, 200)])
    cfg = SequenceConfig(length_s=12.0, gap_min_s=0.3, gap_max_s=1.5, onset_s=0.5, onset_weight=3.0)
    builder = SequenceBuilder(x, torch.eye(3), cfg, 16, 100.0, noise_bank(FEATURES, 5.0), gain_db=0.0)
    gen = torch.Generator().manual_seed(1)
    _, y, mask, weights = builder.batch(3, cycle_permutations(3, gen), gen)
    assert set(weights.unique().tolist()) == {1.0, 3.0}
    assert bool((weights[~mask] == 1).all())
    owner = torch.where(mask, y.argmax(-1), torch.full_like(mask, -1, dtype=torch.long))
    for row, w in zip(owner.tolist(), weights.tolist(), strict=True):
        runs: list[list[int]] = []  # the steps of each run of one clip
        for i, o in enumerate(row):
            if o >= 0 and (i == 0 or row[i - 1] != o):
                runs.append([])
            if o >= 0:
                runs[-1].append(i)
        assert runs
        for run in runs:
            assert [w[i] for i in run] == [3.0] * min(4, len(run)) + [1.0] * max(0, len(run) - 4)
    with pytest.raises(ValueError, match="onset_weight"):
        SequenceConfig(length_s=12.0, onset_weight=0.5)
    exact = SequenceConfig(length_s=12.0, onset_s=0.48, onset_weight=2.0)  # 3 steps, not 4 (0.48 * 100 > 48)
    builder = SequenceBuilder(x, torch.eye(3), exact, 16, 100.0, noise_bank(FEATURES, 5.0))
    owner = torch.tensor([[-1, 0, 0, 0, 0, 0, 2, 2, -1]])
    assert builder._onset_weights(owner).tolist() == [[1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 1.0]]


def test_weighted_losses_equal_repeated_rows() -> None:
    """A row of weight 2 counts as that row twice, in the label loss, the KD loss and both together."""
    from training.distill import DistillConfig
    from training.distill_loss import distill_loss, kd_loss
    from training.losses import loss_fn

    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(5, 4, generator=gen), torch.eye(4)[[0, 1, 2, 3, 0]]
    teacher = torch.softmax(torch.randn(5, 4, generator=gen), -1)
    weights = torch.tensor([2.0, 1.0, 1.0, 1.0, 1.0])
    rep = [0, 0, 1, 2, 3, 4]
    torch.testing.assert_close(
        loss_fn(logits, labels, False, 0.1, weights), loss_fn(logits[rep], labels[rep], False, 0.1)
    )
    torch.testing.assert_close(
        loss_fn(logits, labels, True, 0.0, weights), loss_fn(logits[rep], labels[rep], True, 0.0)
    )
    torch.testing.assert_close(
        kd_loss(logits, teacher, 2.0, weights), kd_loss(logits[rep], teacher[rep], 2.0)
    )
    cfg = DistillConfig(teachers=["t.safetensors"], weight=0.7, temperature=2.0)
    weighted, _ = distill_loss(logits, labels, teacher, cfg, 0.1, weights)
    repeated, _ = distill_loss(logits[rep], labels[rep], teacher[rep], cfg, 0.1)
    torch.testing.assert_close(weighted, repeated)


@pytest.mark.parametrize("background_steps", ["ignore", "no_class"])
def test_a_stream_step_weighs_its_onset_steps(background_steps: str) -> None:
    """``stream_step``'s loss with onset weighting is the weighted mean over the steps it scores (the
    batch's own weights, background steps at 1), and differs from the plain mean it gives without."""
    from training.losses import loss_fn
    from training.train_steps import _augment_stream, stream_step

    x = np.stack([_silence_with_sound(30, 170), _silence_with_sound(10, 60), _silence_with_sound(0, 200)])
    config = {"num_classes": 3, "num_mel_bins": 32, "d_model": 16, "n_layers": 1, "dropout": 0.0}
    torch.manual_seed(0)
    model = build_model("streaming_mamba", config).eval()
    info = ModelInfo("streaming_mamba", config, LABELS, FEATURES, Normalization(-6.0, 5.5, 200))
    augment = AugmentConfig(mixup_prob=0.0, gain_db=0.0, freq_mask=0, time_mask=0)
    losses = []
    for weight in (1.0, 4.0):
        seq = SequenceConfig(
            length_s=12.0, gap_max_s=1.5, background_steps=background_steps, onset_s=0.5, onset_weight=weight
        )
        cfg = TrainConfig(batch_size=3, precision="fp32", label_smoothing=0.0, augment=augment, sequences=seq)
        builder = SequenceBuilder(x, torch.eye(3), seq, 16, 100.0, noise_bank(FEATURES, 5.0))
        gen = torch.Generator().manual_seed(2)
        with torch.no_grad():
            step = stream_step(model, builder, cycle_permutations(3, gen), cfg, gen, info)
        assert step is not None
        gen = torch.Generator().manual_seed(2)
        xb, y, mask, weights = builder.batch(3, cycle_permutations(3, gen), gen)
        with torch.no_grad():
            logits = model.forward_steps(_augment_stream(xb, augment, gen, info, builder.frames))
        keep = mask if background_steps == "ignore" else torch.ones_like(mask)
        expected = loss_fn(logits[keep], y[keep], False, 0.0, weights[keep])
        torch.testing.assert_close(step[0], expected)
        losses.append(float(step[0]))
    assert abs(losses[0] - losses[1]) > 1e-4


def test_streams_without_mixing_draw_as_before() -> None:
    """A mixing rate of 0 draws nothing more: the batch equals that of a builder with no mixing."""
    plain = _mixing_builder("mixup", 1.0)
    plain.mixing = None
    batches = []
    for builder in (plain, _mixing_builder("bc", 0.0)):
        gen = torch.Generator().manual_seed(3)
        batches.append(builder.batch(2, cycle_permutations(3, gen), gen))
    for a, b in zip(*batches, strict=True):
        torch.testing.assert_close(a, b)


def test_a_recurrent_model_learns_from_mixed_streams(esc50_root: Path, tmp_path: Path) -> None:
    sequences = SequenceConfig(length_s=9.0, gap_min_s=0.2, gap_max_s=1.0, mix_prob=0.5)
    augment = AugmentConfig(mixing="bc", mixup_prob=0.0, gain_db=3.0, freq_mask=4, time_mask=10)
    model, info, result = _stream_trained(esc50_root, tmp_path, sequences, augment, epochs=24)
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-3:]) < 0.9 * losses[0]  # soft mixed targets: the loss has a floor above zero
    rows = small_esc50_rows(tuple(LABELS), 3, (1,))
    clips = [Clip(esc50_root / "audio" / r["filename"], (LABELS.index(r["category"]),), 1) for r in rows]
    x = cached_fbanks(clips, FEATURES, None, info.normalization.target_frames)
    model.eval()
    with torch.no_grad():
        last = model.forward_steps(info.normalization.apply(torch.from_numpy(x)))[:, -1].argmax(1)
    right = int((last == torch.tensor([c.targets[0] for c in clips])).sum())
    assert right >= 6, right  # of the nine unmixed clips, each at the last step


def test_streams_mix_only_when_asked() -> None:
    """Streams mix at ``[train.sequences] mix_prob`` (default 0), never at ``[train.augment] mixup_prob``
    (the clip batches' rate, 0.8 by default), so a stream config written before mixing trains as before."""
    from training.train_steps import stream_mixing

    x = np.stack([_silence_with_sound(30, 170), _silence_with_sound(10, 60), _silence_with_sound(0, 200)])
    labels = torch.eye(3)
    assert SequenceConfig().mix_prob == 0.0 and AugmentConfig().mixup_prob > 0
    assert stream_mixing(x, labels, SequenceConfig().mix_prob, AugmentConfig(), FEATURES) is None
    mixing = stream_mixing(x, labels, 0.5, AugmentConfig(mixing="bc"), FEATURES)
    assert mixing is not None and (mixing.kind, mixing.prob) == ("bc", 0.5)
    assert mixing.gains_db is not None and mixing.gains_db.shape == (3,)
    assert mixing.classes.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="mix_prob"):
        SequenceConfig(length_s=30.0, mix_prob=1.5)


def _prefix_builder(mix_prob: float = 0.0) -> tuple[SequenceBuilder, int]:
    """Three fully audible clips; prefix target k of clip n is ``(n + 1) * onehot(k)``."""
    x = np.stack([_silence_with_sound(0, 200) for _ in range(3)])
    count = -(-200 // 16)
    prefixes = torch.stack([(n + 1) * torch.eye(count) for n in range(3)])  # (3, K, K)
    targets = torch.cat([torch.eye(3), prefixes[:, -1]], dim=1)  # labels | whole-clip teacher row
    cfg = SequenceConfig(length_s=12.0, gap_min_s=0.3, gap_max_s=1.5, mix_prob=mix_prob)
    mixing = StreamMixing("bc", mix_prob, 0.2, np.arange(3)) if mix_prob else None
    builder = SequenceBuilder(
        x, targets, cfg, 16, 100.0, noise_bank(FEATURES, 5.0), 0.0, mixing, prefix_targets=prefixes
    )
    return builder, count


def test_prefix_targets_follow_what_each_step_has_heard_of_its_clip() -> None:
    """A step's teacher entries are its clip's prefix of the whole columns heard by its last frame, the
    whole clip (the last prefix) once all of it has been heard."""
    builder, count = _prefix_builder()
    gen = torch.Generator().manual_seed(3)
    fbank, y, mask, _ = builder.batch(3, cycle_permutations(3, gen), gen)
    checked = whole = 0
    for i in range(3):
        loud = (fbank[i] > -1.0).all(dim=1).numpy()
        edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(int), [0]])))
        for s in np.flatnonzero(mask[i].numpy()):
            label = int(y[i, s, :3].argmax())
            starts = [
                a for a, b in zip(edges[::2], edges[1::2], strict=True) if a < (s + 1) * 16 and b > s * 16
            ]
            start = min(starts, key=lambda a: abs(a - s * 16)) if len(starts) > 1 else starts[0]
            heard = min((s + 1) * 16, start + 200) - start
            expected = count - 1 if heard >= 200 else min(max(heard // 16 - 1, 0), count - 1)
            row = y[i, s, 3:]
            assert int(row.argmax()) == expected and float(row.max()) == label + 1, (i, s)
            checked, whole = checked + 1, whole + (expected == count - 1)
    assert checked > 50 and whole > 0


def test_mixed_clips_mix_their_prefix_targets_at_the_clip_share() -> None:
    builder, _ = _prefix_builder(mix_prob=1.0)
    gen = torch.Generator().manual_seed(5)
    _, row, _ = builder._placed_clip(0, gen)
    target, prefixes = builder._mixed_targets[row - 3], builder._mixed_prefixes[row - 3]
    share, partner = float(target[0]), int(torch.topk(target[:3], 2).indices[1])
    expected = share * builder.prefix_targets[0] + (1 - share) * builder.prefix_targets[partner]
    torch.testing.assert_close(prefixes, expected)
    torch.testing.assert_close(target[3:], expected[-1])  # the whole clip: the last prefix
