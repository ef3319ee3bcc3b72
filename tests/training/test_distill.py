"""Distillation on real ESC-50 clips: the loss (ensemble, temperature, dist token), cached vs online
teacher targets, distilled training of a CNN, a streamed recurrent model and an AST, honest per-fold
teachers, and between-class mixing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from esc50_subset import small_esc50_rows, write_esc50_subset

from models.checkpoint import load_checkpoint, read_info
from models.common import FeatureConfig, ModelInfo, Normalization
from models.registry import build_model
from streamd.cli import main
from training.augment import AugmentConfig, between_class, clip_gain_db, mixing_classes
from training.cache import cached_fbanks
from training.clips import Clip
from training.distill import (
    DistillConfig,
    TeacherError,
    build_teacher,
    ensemble_probs,
    teacher_logits,
    teacher_paths,
    vet_teachers,
)
from training.distill_loss import dist_token_target, distill_loss, kd_loss
from training.loop import train_model
from training.sequences import SequenceConfig
from training.train_config import TrainConfig

LABELS = ["dog", "rooster", "rain"]
STUDENT_FEATURES = FeatureConfig(num_mel_bins=32)  # the teacher (fixture) has 128 bins
STUDENT_NORM = Normalization(mean=-6.0, std=5.5, target_frames=300)


@pytest.fixture(scope="module")
def clips(esc50_root: Path) -> list[Clip]:
    rows = small_esc50_rows(tuple(LABELS), 2, (1, 2))  # the teacher's own training clips
    return [
        Clip(esc50_root / "audio" / r["filename"], (LABELS.index(r["category"]),), int(r["fold"]))
        for r in rows
    ]


@pytest.fixture(scope="module")
def teacher_inputs(
    trained_checkpoint: Path, clips: list[Clip]
) -> tuple[torch.nn.Module, ModelInfo, torch.Tensor]:
    model, info = load_checkpoint(trained_checkpoint)
    x = cached_fbanks(clips, info.features, None, info.normalization.target_frames)
    return model, info, torch.from_numpy(x)


def _student_info(arch: str, config: dict) -> ModelInfo:
    return ModelInfo(arch, config, LABELS, STUDENT_FEATURES, STUDENT_NORM)


def test_ensemble_averages_tempered_probabilities(teacher_inputs) -> None:
    model, info, x = teacher_inputs
    trained = teacher_logits(model, info, x)
    torch.manual_seed(1)
    untrained = teacher_logits(build_model(info.arch, info.config).eval(), info, x)
    for t in (1.0, 4.0):
        expected = (torch.softmax(trained / t, 1) + torch.softmax(untrained / t, 1)) / 2
        torch.testing.assert_close(ensemble_probs([trained, untrained], t), expected)
    entropy = [-(p * p.log()).sum(1).mean() for p in (ensemble_probs([trained], t) for t in (1.0, 4.0))]
    assert entropy[1] > entropy[0]  # a higher temperature softens the targets


def test_kd_loss_is_t_squared_kl(teacher_inputs) -> None:
    model, info, x = teacher_inputs
    teacher = ensemble_probs([teacher_logits(model, info, x)], 3.0)
    student = torch.randn(len(x), 3, generator=torch.Generator().manual_seed(0))
    reference = F.kl_div(F.log_softmax(student / 3.0, 1), teacher, reduction="batchmean") * 9.0
    torch.testing.assert_close(kd_loss(student, teacher, 3.0), reference)
    same = teacher_logits(model, info, x)
    assert float(kd_loss(same, ensemble_probs([same], 3.0), 3.0)) < 1e-5  # the teacher itself: no loss


def test_dist_token_learns_the_teacher_and_cls_the_labels(teacher_inputs) -> None:
    model, info, x = teacher_inputs
    probs = ensemble_probs([teacher_logits(model, info, x)], 2.0)
    hard = dist_token_target(probs, "hard")
    assert torch.equal(hard.argmax(1), probs.argmax(1)) and torch.equal(hard.sum(1), torch.ones(len(x)))
    labels = F.one_hot(torch.tensor([0, 1, 2]).repeat(len(x) // 3), 3).float()
    for target in ("hard", "soft"):
        cfg = DistillConfig(teachers=["t"], temperature=2.0, weight=0.5, dist_target=target)
        cls = torch.randn(len(x), 3, requires_grad=True)
        dist = torch.randn(len(x), 3, requires_grad=True)
        loss, parts = distill_loss((cls, dist), labels, probs, cfg, 0.0)
        g_cls, g_dist = torch.autograd.grad(parts_loss := loss, (cls, dist))
        label_only = F.cross_entropy(cls, labels.argmax(1))
        assert parts["label_loss"] == pytest.approx(float(label_only.detach()), rel=1e-5)
        expected = F.cross_entropy(dist, probs.argmax(1)) if target == "hard" else kd_loss(dist, probs, 2.0)
        assert parts["teacher_loss"] == pytest.approx(float(expected.detach()), rel=1e-5)
        torch.testing.assert_close(g_cls, torch.autograd.grad(0.5 * label_only, cls)[0])
        torch.testing.assert_close(g_dist, torch.autograd.grad(0.5 * expected, dist)[0])
        assert float(parts_loss.detach()) > 0


def test_ast_tokens_average_to_the_unchanged_forward(teacher_inputs) -> None:
    config = {"num_classes": 3, "num_mel_bins": 32, "target_frames": 300, "size": "custom", "embed_dim": 48}
    config |= {"depth": 2, "num_heads": 3, "fstride": 16, "tstride": 16}
    torch.manual_seed(0)
    ast = build_model("ast", config).eval()
    x = torch.randn(2, 300, 32)
    cls, dist = ast.forward_tokens(x)
    tokens = ast.token_outputs(x)
    torch.testing.assert_close(ast(x), ast.head(ast.head_norm(tokens.mean(1))))
    torch.testing.assert_close(cls, ast.head(ast.head_norm(tokens[:, 0])))
    torch.testing.assert_close(dist, ast.head(ast.head_norm(tokens[:, 1])))


def test_cached_and_online_teachers_agree_on_an_unaugmented_clip(trained_checkpoint: Path, clips) -> None:
    info = read_info(trained_checkpoint)
    student = ModelInfo("resnet_cnn", {}, LABELS, info.features, info.normalization)  # the teacher's input
    cfg = DistillConfig(teachers=[str(trained_checkpoint)] * 2, mode="online", temperature=2.0)
    teacher = build_teacher(cfg, clips, None, student, None, streams=False)
    assert teacher.online
    x = cached_fbanks(clips, info.features, None, info.normalization.target_frames)
    torch.testing.assert_close(teacher.probs_of(torch.from_numpy(x)), teacher.clip_probs)


@pytest.mark.parametrize("mode", ["cached", "online"])
def test_background_examples_learn_no_class_from_the_teacher_term_too(
    trained_checkpoint: Path, clips, mode: str, monkeypatch
) -> None:
    """With train.background, a background example's teacher target is the uniform distribution (the
    teachers never learned "no class"); a clip keeps its teacher's probabilities."""
    import training.train_steps as steps
    from training.losses import NO_CLASS
    from training.train_steps import clip_step

    info = read_info(trained_checkpoint)
    student = ModelInfo("resnet_cnn", {}, LABELS, info.features, info.normalization)
    cfg = DistillConfig(teachers=[str(trained_checkpoint)], mode=mode, temperature=2.0)
    teacher = build_teacher(cfg, clips, None, student, None, streams=False)
    assert teacher.online == (mode == "online")
    x = cached_fbanks(clips, info.features, None, info.normalization.target_frames)
    noise = np.random.default_rng(0).normal(-8.0, 2.0, size=(2, *x.shape[1:])).astype(np.float32)
    picks = [next(i for i, clip in enumerate(clips) if clip.targets[0] == k) for k in (1, 2)]
    xb = np.concatenate([x[picks], noise])  # two clips, then two background examples (indices past the clips)
    yb = np.array([1, 2, NO_CLASS, NO_CLASS])
    idx = np.array([*picks, len(x), len(x) + 1])
    seen: dict[str, torch.Tensor] = {}
    real = steps.distill_loss

    def spy(logits, labels, probs, distill, smoothing):
        seen["labels"], seen["probs"] = labels, probs
        return real(logits, labels, probs, distill, smoothing)

    monkeypatch.setattr(steps, "distill_loss", spy)
    model = build_model("resnet_cnn", {"num_classes": 3, "num_mel_bins": info.features.num_mel_bins})

    def step(augment: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
        train_cfg = TrainConfig(distill=cfg, augment=augment, precision="fp32", label_smoothing=0.0)
        clip_step(model, xb, yb, train_cfg, torch.Generator().manual_seed(0), student, teacher, idx)
        return seen["labels"], seen["probs"]

    quiet = {"time_shift_frac": 0.0, "gain_db": 0.0, "freq_mask": 0, "time_mask": 0}
    _, probs = step(AugmentConfig(mixup_prob=0.0, **quiet))
    torch.testing.assert_close(probs[:2], teacher.clip_probs[picks])
    torch.testing.assert_close(probs[2:], torch.full((2, 3), 1 / 3))
    if mode == "cached":  # mixed: the teacher rows mix like the labels, the background's share as "no class"
        labels, probs = step(AugmentConfig(mixing="bc", mixup_prob=1.0, **quiet))
        assert (labels.sum(1) < 0.999).any()  # some example was mixed with a background one
        by_class = torch.zeros(3, 3)
        by_class[1], by_class[2] = teacher.clip_probs[picks[0]], teacher.clip_probs[picks[1]]
        torch.testing.assert_close(probs, labels @ by_class + (1 - labels.sum(1, keepdim=True)) / 3)
    hard = dist_token_target(torch.tensor([[1 / 3] * 3, [0.2, 0.7, 0.1]]), "hard")  # an AST's dist token
    torch.testing.assert_close(hard, torch.tensor([[1 / 3] * 3, [0.0, 1.0, 0.0]]))


def test_online_falls_back_to_cached_when_features_differ(trained_checkpoint: Path, clips) -> None:
    lines: list[str] = []
    cfg = DistillConfig(teachers=[str(trained_checkpoint)], mode="online")
    student = _student_info("resnet_cnn", {})
    from training.distill import Teacher, load_teachers

    teachers = load_teachers(cfg, None, LABELS)
    inputs = [cached_fbanks(clips, i.features, None, i.normalization.target_frames) for _, i in teachers]
    teacher = Teacher(cfg, teachers, inputs, student, log=lines.append)
    assert not teacher.online and lines == [lines[0]] and "falls back to cached" in lines[0]


def _train(
    arch: str,
    config: dict,
    clips,
    trained_checkpoint: Path,
    tmp_path: Path,
    weight: float,
    stream_targets: str = "clip",
    **changes,
):
    x = cached_fbanks(clips, STUDENT_FEATURES, None, STUDENT_NORM.target_frames)
    y = np.array([c.targets[0] for c in clips])
    info = _student_info(arch, config)
    torch.manual_seed(0)
    model = build_model(arch, config)
    distill = DistillConfig(
        teachers=[str(trained_checkpoint)], temperature=2.0, weight=weight, stream_targets=stream_targets
    )
    base = {
        "epochs": 8,
        "batch_size": 4,
        "lr": 3e-3,
        "warmup_epochs": 1.0,
        "precision": "fp32",
        "eval_every": 0,
        "label_smoothing": 0.0,
        "augment": AugmentConfig(mixup_prob=0.0, time_shift_frac=0.0, gain_db=0.0, freq_mask=0, time_mask=0),
        "distill": distill,
    }
    cfg = TrainConfig(**{**base, **changes})
    column = int(getattr(model, "column_frames", 0))
    teacher = build_teacher(distill, clips, None, info, None, cfg.sequences.enabled, column)
    out = tmp_path / f"w{weight}_{stream_targets}"
    return train_model(model, (x, y), None, cfg, info, out, progress=False, teacher=teacher).history


def test_distilled_training_lowers_label_and_teacher_loss(trained_checkpoint: Path, clips, tmp_path) -> None:
    """The student starts near uniform, close to a soft teacher at T = 2: the teacher loss is judged
    against the same student trained on the labels alone (weight 0, the teacher loss only measured)."""
    config = {"num_classes": 3, "num_mel_bins": 32, "channels": [8, 16], "dropout": 0.0}
    distilled = _train("resnet_cnn", config, clips, trained_checkpoint, tmp_path, 0.5)
    labels_only = _train("resnet_cnn", config, clips, trained_checkpoint, tmp_path, 0.0)
    assert distilled[-1]["label_loss"] < 0.8 * distilled[0]["label_loss"]
    assert distilled[-1]["teacher_loss"] < 0.8 * labels_only[-1]["teacher_loss"]


def test_distilled_ast_trains_both_tokens(trained_checkpoint: Path, clips, tmp_path) -> None:
    """DeiT's hard distillation: the dist token learns the teacher's argmax, the cls token the labels."""
    config = {"num_classes": 3, "num_mel_bins": 32, "target_frames": 300, "size": "custom", "embed_dim": 48}
    config |= {"depth": 2, "num_heads": 3, "fstride": 16, "tstride": 16}
    history = _train("ast", config, clips, trained_checkpoint, tmp_path, 0.5, epochs=10, lr=1e-3)
    assert history[-1]["label_loss"] < 0.8 * history[0]["label_loss"]
    assert history[-1]["teacher_loss"] < 0.8 * history[0]["teacher_loss"]


def test_streams_learn_teacher_targets_at_every_step_over_a_clip(
    trained_checkpoint: Path, clips, tmp_path
) -> None:
    """Steps over clips learn their clip's teacher probabilities: the distilled stream student ends
    closer to the teacher than the same student trained on the labels alone, and still learns the labels."""
    config = {"num_classes": 3, "num_mel_bins": 32, "d_model": 32, "n_layers": 1, "dropout": 0.0}
    sequences = SequenceConfig(length_s=9.0, gap_min_s=0.2, gap_max_s=1.0)
    run = {"sequences": sequences, "epochs": 12, "lr": 5e-3}
    distilled = _train("streaming_mamba", config, clips, trained_checkpoint, tmp_path, 0.5, **run)
    labels_only = _train("streaming_mamba", config, clips, trained_checkpoint, tmp_path, 0.0, **run)
    assert distilled[-1]["label_loss"] < 0.8 * distilled[0]["label_loss"]
    assert distilled[-1]["teacher_loss"] < 0.8 * labels_only[-1]["teacher_loss"]


def test_prefix_targets_are_the_teacher_on_the_heard_start_then_silence(
    trained_checkpoint: Path, clips
) -> None:
    """Prefix k is the teacher on the clip cut after k + 1 columns and padded with silence (the rule of a
    short input; only the frames across the cut differ), the last prefix the whole clip."""
    from audio_core.audio_file import read_audio
    from audio_core.fbank import compute_fbank
    from audio_core.windows import pad_with_silence, window_samples_for_frames

    student = _student_info("streaming_mamba", {"num_classes": 3, "num_mel_bins": 32})
    cfg = DistillConfig(teachers=[str(trained_checkpoint)], stream_targets="prefix")
    teacher = build_teacher(cfg, clips[:3], None, student, None, streams=True, column_frames=16)
    model, info = load_checkpoint(trained_checkpoint)
    assert teacher.prefix_probs is not None
    assert teacher.prefix_probs.shape == (3, -(-info.normalization.target_frames // 16), 3)
    torch.testing.assert_close(teacher.prefix_probs[:, -1], teacher.clip_probs)
    shift, length = info.features.frame_shift, info.features.frame_length
    frames = info.normalization.target_frames
    window = read_audio(clips[0].path, 16000)[: window_samples_for_frames(frames, info.features)]
    for k in (0, 5, 20):
        heard = (k + 1) * 16
        cut = pad_with_silence(window[: (heard - 1) * shift + length], len(window))
        fbank = compute_fbank(cut, info.features)[None, :frames]
        direct = ensemble_probs([teacher_logits(model, info, fbank)], cfg.temperature)[0]
        assert float((teacher.prefix_probs[0, k] - direct).abs().max()) < 0.02, k
    early, late = teacher.prefix_probs[:, 0], teacher.prefix_probs[:, -1]
    assert float((early - late).abs().max()) > 0.05  # the first column alone is not the whole clip


def test_prefix_targets_are_for_streams_and_train_a_stream_student(
    trained_checkpoint: Path, clips, tmp_path
) -> None:
    cfg = DistillConfig(teachers=[str(trained_checkpoint)], stream_targets="prefix")
    student = _student_info("streaming_mamba", {"num_classes": 3, "num_mel_bins": 32})
    with pytest.raises(TeacherError, match=r"is for \[train.sequences\] streams"):
        build_teacher(cfg, clips, None, student, None, streams=False, column_frames=16)
    with pytest.raises(ValueError, match="stream_targets"):
        DistillConfig(teachers=[str(trained_checkpoint)], stream_targets="window")
    config = {"num_classes": 3, "num_mel_bins": 32, "d_model": 32, "n_layers": 1, "dropout": 0.0}
    sequences = SequenceConfig(length_s=9.0, gap_min_s=0.2, gap_max_s=1.0)
    run = {"sequences": sequences, "epochs": 12, "lr": 5e-3}
    history = _train("streaming_mamba", config, clips, trained_checkpoint, tmp_path, 0.5, "prefix", **run)
    whole = _train("streaming_mamba", config, clips, trained_checkpoint, tmp_path, 0.5, "clip", **run)
    assert history[-1]["label_loss"] < 0.8 * history[0]["label_loss"]
    # same start, same streams, other teacher rows: the flatter early prefixes are nearer the new student
    assert history[0]["teacher_loss"] < whole[0]["teacher_loss"]


def test_fold_teachers_are_substituted_and_dishonest_ones_refused(trained_checkpoint: Path) -> None:
    cfg = DistillConfig(teachers=["runs/t_f{fold}/single/model.safetensors", "a.safetensors"])
    assert teacher_paths(cfg, [4]) == [Path("runs/t_f4/single/model.safetensors"), Path("a.safetensors")]
    with pytest.raises(TeacherError, match="exactly one held-out fold"):
        teacher_paths(cfg, None)
    honest = DistillConfig(teachers=[str(trained_checkpoint)])  # trained on folds 1 and 2
    vet_teachers(honest, [None, [3]], LABELS)  # full mode, or a fold it never saw: fine
    with pytest.raises(TeacherError, match="single-label data; mine is multi-label"):
        vet_teachers(honest, [None], LABELS, "mine", multi_label=True)  # a multi-label student
    with pytest.raises(TeacherError, match=r"trained on held-out fold\(s\) \[2\]: refused"):
        vet_teachers(honest, [[3], [2]], LABELS)
    # folds are a data set's own: a teacher of another data set (another split of the same audio) is
    # refused whatever its fold numbers, one of the same data set is vetted as above
    dataset = read_info(trained_checkpoint).extra["dataset"]
    vet_teachers(honest, [[3]], LABELS, dataset)
    with pytest.raises(TeacherError, match=r"was trained on data set .*, not 'resplit': its folds are not"):
        vet_teachers(honest, [[3]], LABELS, "resplit")


def test_train_command_refuses_a_teacher_that_saw_the_held_out_fold(
    trained_checkpoint: Path, esc50_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = write_esc50_subset(tmp_path, tuple(LABELS), 1, (1, 2))
    config = tmp_path / "distill.toml"
    config.write_text(
        f"""
[experiment]
output_dir = "{tmp_path / "run"}"
mode = "cv"
[data]
reader = "esc50"
csv_path = "{csv_path}"
audio_dir = "{esc50_root / "audio"}"
[model]
arch = "resnet_cnn"
[train.distill]
teachers = "{trained_checkpoint}"
"""
    )
    code = main(["train", str(config), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "trained on held-out fold(s) [1]: refused" in err
    assert not (tmp_path / "run" / "fold1").exists()  # refused before any training


def test_between_class_mixing_pairs_clips_of_different_classes(teacher_inputs, clips) -> None:
    _, info, x = teacher_inputs
    classes = torch.tensor([c.targets[0] for c in clips])
    y = F.one_hot(classes, 3).float()
    mixed, target = between_class(x, y, classes, 1.0, torch.Generator().manual_seed(0), info.features)
    assert torch.equal((target > 0).sum(1), torch.full((len(x),), 2))  # two classes in every target
    torch.testing.assert_close(target.sum(1), torch.ones(len(x)))
    assert not torch.equal(mixed, x)
    same = torch.zeros(len(x), dtype=torch.long)  # one class only: no partner, nothing mixed
    alone, target_alone = between_class(x, y, same, 1.0, torch.Generator().manual_seed(0), info.features)
    assert torch.equal(alone, x) and torch.equal(target_alone, y)


def test_background_rows_are_a_class_of_their_own_for_between_class_partners(teacher_inputs) -> None:
    _, info, x = teacher_inputs
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # class 0, bg, 1, bg
    assert mixing_classes(labels).tolist() == [0, -1, 1, -1]
    # a class-0 clip and a background row are partners (argmax alone had called both class 0)
    y = labels[:2]
    gen = torch.Generator().manual_seed(0)
    mixed, target = between_class(x[:2], y, mixing_classes(y), 1.0, gen, info.features)
    assert not torch.equal(mixed, x[:2])
    assert 0.0 < float(target[1, 0]) < 1.0 and float(target[0, 0]) < 1.0  # each took a share of the other


def test_between_class_gain_is_the_loudest_a_weighted_frame(teacher_inputs) -> None:
    _, info, x = teacher_inputs
    louder = clip_gain_db(x + np.log(10.0), info.features)  # +10 dB power on every bin
    torch.testing.assert_close(louder, clip_gain_db(x, info.features) + 10.0)


def test_prefix_targets_are_kept_and_read_back_for_the_same_teachers_and_clips(
    trained_checkpoint: Path, clips, tmp_path, monkeypatch
) -> None:
    """The next run from the same teachers and clips reads the prefixes back (nothing scored again);
    another temperature, or other clips, are scored anew."""
    import training.prefix_targets as prefix_targets

    student = _student_info("streaming_mamba", {"num_classes": 3, "num_mel_bins": 32})
    cfg = DistillConfig(teachers=[str(trained_checkpoint)], stream_targets="prefix")
    first = build_teacher(cfg, clips[:3], None, student, tmp_path, streams=True, column_frames=16)
    assert len(list((tmp_path / "prefix_targets").glob("*.npy"))) == 1

    def scored(*args, **kwargs):
        raise AssertionError("scored again")

    monkeypatch.setattr(prefix_targets, "prefix_probs", scored)
    again = build_teacher(cfg, clips[:3], None, student, tmp_path, streams=True, column_frames=16)
    torch.testing.assert_close(again.prefix_probs, first.prefix_probs)
    for changed, subset in (
        (DistillConfig(**{**cfg.__dict__, "temperature": 3.0}), clips[:3]),
        (cfg, clips[1:4]),
    ):
        with pytest.raises(AssertionError, match="scored again"):
            build_teacher(changed, subset, None, student, tmp_path, streams=True, column_frames=16)


def test_a_teacher_that_trained_on_a_copy_of_a_held_out_clip_is_refused(tmp_path: Path) -> None:
    """Teachers were vetted by fold number only: one that trained on a byte copy of a held-out clip (under
    another name, in another fold) passed as honest. A teacher records its clips' digests; they are
    weighed against the run's held-out clips."""
    from training.distill import check_clips_unseen
    from training.trained_clips import KEY, record

    trained, other = tmp_path / "a.wav", tmp_path / "b.wav"
    trained.write_bytes(b"RIFF one clip")
    other.write_bytes(b"RIFF another clip")
    copy = tmp_path / "held" / "renamed.wav"
    copy.parent.mkdir()
    copy.write_bytes(trained.read_bytes())
    info = _student_info("resnet_cnn", {})
    info.extra.update({"train_folds": [1, 2, 3], KEY: record([trained])})
    check_clips_unseen(tmp_path / "t.safetensors", info, [other])  # never saw it: fine
    with pytest.raises(TeacherError, match=r"trained on 1 of the 2 held-out clips \(by their bytes\)"):
        check_clips_unseen(tmp_path / "t.safetensors", info, [other, copy])
    del info.extra[KEY]  # a teacher that records no clips is vetted by fold alone, as before
    check_clips_unseen(tmp_path / "t.safetensors", info, [other, copy])
