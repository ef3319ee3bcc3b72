"""The training loop: AdamW, warm-up + cosine schedule, augmentation, EMA weights, bf16 autocast, resume.

``train_model`` trains on in-memory un-normalised fbanks; each epoch it saves a resumable training state
(``training.train_state``) and at the end a streamd checkpoint of the EMA weights (``training.ema``). The
config is ``training.train_config``, one step ``training.train_steps``, the losses ``training.losses``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from audio_core.compute import describe_device, resolve_device
from models.bf16 import resolve_auto
from models.checkpoint import save_checkpoint
from models.common import ModelInfo
from training.distill import Teacher
from training.ema import Ema
from training.inert_settings import inert_settings
from training.param_groups import param_groups, set_backbone_frozen
from training.predict import accuracy, predict_scores
from training.resume import ResumeMismatch, data_digest, fingerprint, setting_defaults
from training.schedule import lr_at
from training.sequences import cycle_permutations
from training.train_config import TrainConfig, TrainResult, set_threads
from training.train_state import load_state, save_state
from training.train_steps import clip_step, sequence_builder, stream_step


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
    accept_data_change: bool = False,
    score_val: Callable[[nn.Module, str], np.ndarray] | None = None,
    real_frames: np.ndarray | None = None,
) -> TrainResult:
    """Train ``model`` and write ``out_dir/model.safetensors`` (EMA weights) plus a training log;
    with ``cfg.distill`` on, ``teacher`` holds the training clips' teacher targets. ``score_val(model,
    precision)``: the held-out clips' scores as the held-out report scores them (``training.evaluate``'s
    clip rule: a longer clip by the mean of its windows, a recurrent model's short clip at its own last
    step), for the epoch line's ``val``; without it, ``val``'s fbanks as they are. ``real_frames``: each
    training row's frames of audio before its padding (``training.short_clips``)."""
    if cfg.distill.enabled and teacher is None:
        raise ValueError("train.distill names teachers but no teacher targets were given")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.compute, "train.compute")
    # emulated bf16 is many times slower: auto is bf16 only where the device runs it natively
    cfg = replace(cfg, compute=device.type, precision=resolve_auto(cfg.precision, device.type))
    model.to(device)  # before the optimiser and the EMA copy are made, so both live on the device
    if teacher is not None and teacher.online:
        teacher.to(device)
    set_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x_train, y_train = train
    if cfg.background > 0 and not cfg.sequences.enabled:
        from training.background import with_background

        x_train, y_train = with_background(x_train, y_train, cfg.background, info.features, cfg.seed)
    if real_frames is not None:  # background rows fill their window
        real_frames = np.pad(
            real_frames, (0, len(x_train) - len(real_frames)), constant_values=x_train.shape[1]
        )
    n = len(x_train)
    streams = sequence_builder(model, train, cfg, info, teacher) if cfg.sequences.enabled else None
    steps_per_epoch = streams.steps_per_epoch(cfg.batch_size) if streams else max(1, n // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    for note in inert_settings(cfg, model):  # accepted, but nothing reads it for this model or data
        print(f"streamd: warning: {out_dir.name}: {note}", file=sys.stderr, flush=True)
    groups = param_groups(model, cfg.weight_decay, cfg.backbone_lr_scale, cfg.layer_decay)
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    ema = Ema(model, cfg.ema_decay)
    history: list[dict[str, float]] = []
    start_epoch, step, elapsed = 0, 0, 0.0
    state_path = out_dir / "train_state.safetensors"
    config = {**fingerprint(cfg, info), "data": data_digest(*train), "init": info.extra.get("init_source")}
    if resume and state_path.exists():
        start_epoch, step, elapsed, history = load_state(
            state_path, model, ema, opt, gen, config, setting_defaults(cfg, info), accept_data_change
        )
        if start_epoch > cfg.epochs:  # the model there is a longer run's: never report it as this one
            raise ResumeMismatch(
                f"{state_path}: already trained for {start_epoch} epochs, more than the {cfg.epochs} asked "
                "for (--fresh starts over; or another --out)"
            )
        print(f"resuming from epoch {start_epoch} of {cfg.epochs} ({state_path}; --fresh starts over)")
    elif state_path.exists():  # --fresh: this run's old state goes as the run starts (said)
        state_path.unlink()
        print(f"starting over (--fresh): the saved training state {state_path} was removed", flush=True)
    print(f"{out_dir.name}: training on {describe_device(device)} in {cfg.precision}", flush=True)
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
                    result = stream_step(model, streams, clip_stream, cfg, gen, info, teacher)
                    if result is None:  # background only (silent clips): nothing to learn, no empty loss
                        skipped += 1
                        continue
                else:
                    idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size].numpy()
                    real = None if real_frames is None else real_frames[idx]
                    result = clip_step(model, x_train[idx], y_train[idx], cfg, gen, info, teacher, idx, real)
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
                scored = (
                    score_val(ema.model, cfg.precision)
                    if score_val is not None
                    else predict_scores(ema.model, val[0], info, precision=cfg.precision)
                )
                record["val_acc"] = accuracy(scored, val[1])
            history.append(record)
            stats = f"loss {record['loss']:.3f} acc {record['train_acc']:.3f}"
            if "val_acc" in record:
                stats += f" val {record['val_acc']:.3f}"
            bar.update(task, completed=epoch + 1, stats=stats)
            save_state(state_path, model, ema, opt, gen, epoch + 1, step, elapsed, history, config)
            if not tty:  # redirected or --no-progress: one plain line per epoch, written at once
                print(f"{out_dir.name} epoch {epoch + 1}/{cfg.epochs} {stats} {elapsed:.0f}s", flush=True)

    info.extra = {**info.extra, "train_config": asdict(cfg), "history": history[-1:] if history else []}
    ckpt = save_checkpoint(out_dir / "model.safetensors", ema.model.cpu(), info)
    (out_dir / "history.json").write_text(json.dumps(history, indent=1))
    val_acc = history[-1].get("val_acc") if history else None
    return TrainResult(ckpt, history, val_acc, elapsed)
