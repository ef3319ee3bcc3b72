"""The training loop: AdamW, warm-up + cosine schedule, augmentation, EMA weights, bf16 autocast, resume.

``train_model`` trains on in-memory un-normalised fbanks; each epoch it saves a resumable training state
(safetensors: model, EMA, optimiser tensors; JSON header: epoch, step, RNG, history) and at the end a
streamd checkpoint of the EMA weights. Nothing is pickled.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from audio_core.scoring import scores
from models.atomic_write import write_atomically
from models.bf16 import bf16_autocast, resolve_auto
from models.checkpoint import save_checkpoint
from models.common import ModelInfo
from training.augment import AugmentConfig, mix_clips, random_gain, random_time_shift, spec_augment
from training.distill import DistillConfig, Teacher, distill_loss, flatten_steps
from training.param_groups import param_groups, set_backbone_frozen
from training.resume import check_resume, fingerprint, incompatible
from training.sequences import SequenceBuilder, SequenceConfig, cycle_permutations, noise_bank


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 3.0
    min_lr_ratio: float = 0.01
    label_smoothing: float = 0.1
    ema_decay: float = 0.995
    grad_clip: float = 5.0
    precision: str = "auto"  # auto: bf16 where the CPU runs it natively (models.bf16), else fp32
    num_threads: int = 0
    seed: int = 0
    eval_every: int = 5
    background: float = 0.0  # background examples (no-class target) per clip: training.background
    backbone_lr_scale: float = 1.0  # fine-tuning: the backbone's lr relative to the head's
    layer_decay: float = 1.0  # fine-tuning transformers/Mamba: lr × decay^(depth - block)
    freeze_backbone_epochs: int = 0  # fine-tuning: train only the head for this many epochs
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    sequences: SequenceConfig = field(default_factory=SequenceConfig)  # recurrent models: train on streams
    distill: DistillConfig = field(default_factory=DistillConfig)  # teacher targets (training.distill)

    def __post_init__(self) -> None:
        from training.background import check_stream_background

        check_stream_background(self.background, self.sequences.enabled)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        aug = AugmentConfig(**data.pop("augment", {}))
        seq = SequenceConfig(**data.pop("sequences", {}))
        distill = DistillConfig(**data.pop("distill", {}))
        return cls(augment=aug, sequences=seq, distill=distill, **data)


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict[str, float]]
    val_accuracy: float | None
    train_seconds: float


def lr_at(step: int, total: int, warmup: int, base: float, min_ratio: float) -> float:
    """Linear warm-up to ``base`` over ``warmup`` steps, then cosine decay to ``base * min_ratio``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


NO_CLASS = -1  # class index of a background example: its target row is all zeros


def soft_targets(y: torch.Tensor, num_classes: int, multi_label: bool) -> torch.Tensor:
    """One-hot rows (``NO_CLASS``: an all-zero row), or the multi-hot targets as they are."""
    if multi_label:
        return y.float()
    return F.one_hot(y.clamp(min=0), num_classes).float() * (y >= 0).unsqueeze(1)


def loss_fn(logits: torch.Tensor, target: torch.Tensor, multi_label: bool, smoothing: float) -> torch.Tensor:
    """Cross-entropy on soft targets (single-label, with label smoothing) or BCE (multi-label).

    Single-label: a target row summing to less than 1 (the all-zero row of a background example, or a
    clip mixed with one) has its missing mass spread evenly over the classes: "no class" is the uniform
    distribution, the least confident answer a softmax can give.
    """
    logits = logits.float()
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, target)
    c = logits.shape[1]
    target = target + (1 - target.sum(dim=1, keepdim=True)).clamp(min=0) / c
    target = target * (1 - smoothing) + smoothing / c
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def training_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Training logits: ``(B, C)`` (windowed) or ``(B, S, C)`` over a recurrent model's last steps."""
    last_steps = getattr(model, "last_steps_logits", None)
    return last_steps(x) if callable(last_steps) else model(x)


def sequence_loss(
    logits: torch.Tensor, target: torch.Tensor, multi_label: bool, smoothing: float
) -> torch.Tensor:
    """``loss_fn`` on ``(B, C)`` logits, or its mean over the steps of ``(B, S, C)`` (clip target)."""
    if logits.ndim == 2:
        return loss_fn(logits, target, multi_label, smoothing)
    b, s, c = logits.shape
    expanded = target.unsqueeze(1).expand(b, s, target.shape[-1]).reshape(b * s, -1)
    return loss_fn(logits.reshape(b * s, c), expanded, multi_label, smoothing)


def predict_scores(
    model: nn.Module, x: np.ndarray, info: ModelInfo, batch_size: int = 64, precision: str = "fp32"
) -> np.ndarray:
    """Class scores (softmax or sigmoid) for un-normalised fbanks ``(N, T, F)``."""
    model.eval()
    out = [
        scores(model, info, torch.from_numpy(x[i : i + batch_size]), precision=precision)
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out).numpy()


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    if y.ndim == 2:  # multi-label: top-1 is one of the true labels
        return float(np.mean(y[np.arange(len(y)), scores.argmax(1)] > 0))
    return float(np.mean(scores.argmax(1) == y))


class _Ema:
    """Exponential moving average of a model's parameters and buffers."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(d).add_(p.detach(), alpha=1 - d)
            else:
                e.copy_(p)


def train_model(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    cfg: TrainConfig,
    info: ModelInfo,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    teacher: Teacher | None = None,
) -> TrainResult:
    """Train ``model`` and write ``out_dir/model.safetensors`` (EMA weights) plus a training log;
    with ``cfg.distill`` on, ``teacher`` holds the training clips' teacher targets."""
    if cfg.distill.enabled and teacher is None:
        raise ValueError("train.distill names teachers but no teacher targets were given")
    if cfg.distill.enabled and cfg.background > 0:
        raise ValueError("train.background and train.distill together are not supported (no teacher targets)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = replace(cfg, precision=resolve_auto(cfg.precision))  # emulated bf16 is many times slower
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_train, y_train = train
    if cfg.background > 0 and not cfg.sequences.enabled:
        from training.background import with_background

        x_train, y_train = with_background(x_train, y_train, cfg.background, info.features, cfg.seed)
    n = len(x_train)
    streams = _sequence_builder(model, train, cfg, info, teacher) if cfg.sequences.enabled else None
    steps_per_epoch = streams.steps_per_epoch(cfg.batch_size) if streams else max(1, n // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    groups = param_groups(model, cfg.weight_decay, cfg.backbone_lr_scale, cfg.layer_decay)
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    ema = _Ema(model, cfg.ema_decay)
    history: list[dict[str, float]] = []
    start_epoch, step, elapsed = 0, 0, 0.0
    state_path = out_dir / "train_state.safetensors"
    config = fingerprint(cfg, info)
    if resume and state_path.exists():
        start_epoch, step, elapsed, history = _load_state(state_path, model, ema, opt, gen, config)
        if progress:
            print(f"resuming from epoch {start_epoch} of {cfg.epochs} ({state_path}; --fresh starts over)")
    tty = progress and sys.stdout.isatty()

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, disable=not tty, transient=False) as bar:
        task = bar.add_task(out_dir.name, total=cfg.epochs, completed=start_epoch, stats="")
        batches = bar.add_task("  batches", total=steps_per_epoch, stats="")
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.time()
            model.train()
            if cfg.freeze_backbone_epochs:
                set_backbone_frozen(model, epoch < cfg.freeze_backbone_epochs)
            order = torch.randperm(n, generator=gen)
            clip_stream = cycle_permutations(n, gen)  # lazy: draws nothing unless streams use it
            loss_sum, correct, seen, labelled, skipped = 0.0, 0.0, 0, 0, 0
            bar.reset(batches, total=steps_per_epoch)
            part_sums: dict[str, float] = {}
            for b in range(steps_per_epoch):
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total, warmup, cfg.lr, cfg.min_lr_ratio) * group["lr_scale"]
                if streams is not None:
                    result = _stream_step(model, streams, clip_stream, cfg, gen, info, teacher)
                    if result is None:  # background only (silent clips): nothing to learn, no empty loss
                        skipped += 1
                        continue
                else:
                    idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size].numpy()
                    result = _clip_step(model, x_train[idx], y_train[idx], cfg, gen, info, teacher, idx)
                loss, logits, yb, parts = result
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                ema.update(model, step)
                step += 1
                loss_sum += loss.item() * len(logits)
                has_label = yb.sum(1) > 0  # background rows ("no class") have none: not in the accuracy
                correct += float(((logits.argmax(1) == yb.argmax(1)) & has_label).sum())
                labelled += int(has_label.sum())
                seen += len(logits)
                bar.update(batches, completed=b + 1, stats=f"loss {loss_sum / max(seen, 1):.3f}")
                for key, value in parts.items():
                    part_sums[key] = part_sums.get(key, 0.0) + value * len(logits)
            elapsed += time.time() - t0
            record = {
                "epoch": epoch + 1,
                "loss": loss_sum / max(seen, 1),
                "train_acc": correct / max(labelled, 1),
                "seconds": elapsed,
            }
            record.update({key: value / max(seen, 1) for key, value in part_sums.items()})
            if skipped:
                record["skipped_batches"] = skipped
            last = epoch + 1 == cfg.epochs
            if val is not None and (last or (cfg.eval_every > 0 and (epoch + 1) % cfg.eval_every == 0)):
                record["val_acc"] = accuracy(
                    predict_scores(ema.model, val[0], info, precision=cfg.precision), val[1]
                )
            history.append(record)
            stats = f"loss {record['loss']:.3f} acc {record['train_acc']:.3f}"
            if "val_acc" in record:
                stats += f" val {record['val_acc']:.3f}"
            bar.update(task, completed=epoch + 1, stats=stats)
            _save_state(state_path, model, ema, opt, gen, epoch + 1, step, elapsed, history, config)
            if progress and not tty:  # redirected: one plain line per epoch, written at once
                print(f"{out_dir.name} epoch {epoch + 1}/{cfg.epochs} {stats} {elapsed:.0f}s", flush=True)

    info.extra = {**info.extra, "train_config": asdict(cfg), "history": history[-1:] if history else []}
    ckpt = save_checkpoint(out_dir / "model.safetensors", ema.model, info)
    (out_dir / "history.json").write_text(json.dumps(history, indent=1))
    val_acc = history[-1].get("val_acc") if history else None
    return TrainResult(ckpt, history, val_acc, elapsed)


def _augment(
    x: torch.Tensor, y: torch.Tensor, aug: AugmentConfig, gen: torch.Generator, info: ModelInfo
) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _mix(x, y, aug, gen, info)
    return _mask(x, aug, gen, info), y


def _mix(
    x: torch.Tensor, y: torch.Tensor, aug: AugmentConfig, gen: torch.Generator, info: ModelInfo
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift, gain and mixing (mixup or between-class) on un-normalised fbanks; ``y`` mixes alike."""
    x = random_time_shift(x, aug.time_shift_frac, gen)
    x = random_gain(x, aug.gain_db, gen)
    return mix_clips(x, y, aug, gen, info.features, len(info.labels))


def _mask(x: torch.Tensor, aug: AugmentConfig, gen: torch.Generator, info: ModelInfo) -> torch.Tensor:
    x = info.normalization.apply(x)
    return spec_augment(x, aug.freq_mask, aug.time_mask, aug.num_freq_masks, aug.num_time_masks, gen)


Step = tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, float]]  # loss, logits, targets, loss parts


def _clip_step(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    gen: torch.Generator,
    info: ModelInfo,
    teacher: Teacher | None = None,
    idx: np.ndarray | None = None,
) -> Step:
    """Forward a batch of clips (a recurrent model: over its last steps, averaged for the statistics)."""
    yb = soft_targets(torch.from_numpy(y), len(info.labels), info.multi_label)
    if teacher is not None:
        return _distilled_clip_step(model, torch.from_numpy(x), yb, cfg, gen, info, teacher, idx)
    xb, yb = _augment(torch.from_numpy(x), yb, cfg.augment, gen, info)
    with bf16_autocast("cpu", enabled=cfg.precision == "bf16"):
        logits = training_logits(model, xb)
    loss = sequence_loss(logits, yb, info.multi_label, cfg.label_smoothing)
    return loss, logits.mean(dim=1) if logits.ndim == 3 else logits, yb, {}


def _distilled_clip_step(
    model: nn.Module,
    x: torch.Tensor,
    yb: torch.Tensor,
    cfg: TrainConfig,
    gen: torch.Generator,
    info: ModelInfo,
    teacher: Teacher,
    idx: np.ndarray | None,
) -> Step:
    """A clip batch against labels and teacher: cached probabilities ride along the labels through the
    mixing (same partner, same ratio); online, the teacher scores the mixed input before the masks."""
    c = yb.shape[1]
    if not teacher.online:
        yb = torch.cat([yb, teacher.clip_probs[torch.as_tensor(idx)]], dim=1)
    xm, yb = _mix(x, yb, cfg.augment, gen, info)
    yb, tb = (yb, teacher.probs_of(xm)) if teacher.online else (yb[:, :c], yb[:, c:])
    xb = _mask(xm, cfg.augment, gen, info)
    tokens = getattr(model, "forward_tokens", None)
    with bf16_autocast("cpu", enabled=cfg.precision == "bf16"):
        logits = tokens(xb) if callable(tokens) else training_logits(model, xb)
    flat, labels, probs = flatten_steps(logits, yb, tb)
    loss, parts = distill_loss(flat, labels, probs, cfg.distill, cfg.label_smoothing)
    if isinstance(logits, tuple):
        logits = (logits[0] + logits[1]) / 2
    return loss, logits.mean(dim=1) if logits.ndim == 3 else logits, yb, parts


def _stream_step(
    model: nn.Module,
    streams: SequenceBuilder,
    clips: Iterator[int],
    cfg: TrainConfig,
    gen: torch.Generator,
    info: ModelInfo,
    teacher: Teacher | None = None,
) -> Step | None:
    """Forward a batch of streams; the loss is over the steps that have a target (None if none has).
    With a teacher, a step over a clip also learns that clip's teacher probabilities. Steps over the
    background between clips have no target, or (``background_steps = "no_class"``) learn "nothing": an
    all-zero label row (``loss_fn`` makes it uniform) and a uniform teacher row."""
    xb, yb, mask = streams.batch(cfg.batch_size, clips, gen)
    if not bool(mask.any()):
        return None
    xb = _augment_stream(xb, cfg.augment, gen, info, streams.frames)
    with bf16_autocast("cpu", enabled=cfg.precision == "bf16"):
        logits = model.forward_steps(xb)
    if cfg.sequences.background_steps == "no_class":
        background = ~mask.reshape(-1)
        logits, yb = logits.reshape(-1, logits.shape[-1]), yb.reshape(-1, yb.shape[-1]).clone()
    else:
        background = None
        logits, yb = logits[mask], yb[mask]  # steps over background have no target
    if teacher is not None:  # targets carry [labels | teacher probabilities] per step
        c = logits.shape[1]
        if background is not None:
            yb[background, c:] = 1.0 / c
        loss, parts = distill_loss(logits, yb[:, :c], yb[:, c:], cfg.distill, cfg.label_smoothing)
        return loss, logits, yb[:, :c], parts
    return loss_fn(logits, yb, info.multi_label, cfg.label_smoothing), logits, yb, {}


def _sequence_builder(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    cfg: TrainConfig,
    info: ModelInfo,
    teacher: Teacher | None = None,
) -> SequenceBuilder:
    column = getattr(model, "column_frames", None)
    if column is None or not callable(getattr(model, "forward_steps", None)):
        raise ValueError("train.sequences is for recurrent models (one result per column)")
    features = info.features
    targets = soft_targets(torch.from_numpy(train[1]), len(info.labels), info.multi_label)
    if teacher is not None:  # each clip's teacher probabilities ride along its labels onto its steps
        targets = torch.cat([targets, teacher.clip_probs], dim=1)
    frame_rate = features.sample_rate / features.frame_shift
    noise = noise_bank(features, seed=cfg.seed)
    return SequenceBuilder(train[0], targets, cfg.sequences, column, frame_rate, noise, cfg.augment.gain_db)


def _augment_stream(
    x: torch.Tensor, aug: AugmentConfig, gen: torch.Generator, info: ModelInfo, frames: int
) -> torch.Tensor:
    """Streams: clips got their gain and place when built; normalise, then SpecAugment as many time
    masks per window length as clips get."""
    x = info.normalization.apply(x)
    per_window = max(1, round(frames / info.normalization.target_frames))
    return spec_augment(
        x, aug.freq_mask, aug.time_mask, aug.num_freq_masks, aug.num_time_masks * per_window, gen
    )


def _save_state(
    path: Path,
    model: nn.Module,
    ema: _Ema,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    epoch: int,
    step: int,
    elapsed: float,
    history: list[dict[str, float]],
    config: dict[str, Any] | None = None,
) -> None:
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().contiguous()
    for k, v in ema.model.state_dict().items():
        tensors[f"ema.{k}"] = v.detach().contiguous()
    opt_state = opt.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for pid, st in opt_state["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val) and val.ndim > 0:
                tensors[f"opt.{pid}.{key}"] = val.contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = float(val)
    tensors["rng.generator"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"epoch": epoch, "step": step, "elapsed": elapsed, "history": history, "opt_scalars": scalars}
    meta["config"] = config
    write_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)}))


def _load_state(
    path: Path,
    model: nn.Module,
    ema: _Ema,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    config: dict[str, Any] | None = None,
) -> tuple[int, int, float, list[dict[str, float]]]:
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {})["state"])
    if config is not None:
        check_resume(path, meta.get("config"), config)
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    except RuntimeError as exc:
        raise incompatible(path, exc) from None
    opt_state = opt.state_dict()
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, key = k.split(".", 2)
            state.setdefault(int(pid), {})[key] = v
    for pid, sc in meta["opt_scalars"].items():
        for key, val in sc.items():
            state.setdefault(int(pid), {})[key] = torch.tensor(val)
    opt_state["state"] = state
    opt.load_state_dict(opt_state)
    gen.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["epoch"]), int(meta["step"]), float(meta["elapsed"]), list(meta["history"])
