"""Settings that do nothing for the model or data at hand are said, not accepted unsaid."""

from __future__ import annotations

import numpy as np
import torch

from models.common import FeatureConfig, ModelInfo, Normalization
from models.registry import build_model
from training.distill import DistillConfig
from training.inert_settings import inert_settings
from training.loop import train_model
from training.sequences import SequenceConfig
from training.train_config import TrainConfig

CNN = {"num_classes": 3, "num_mel_bins": 64, "channels": [8, 16], "dropout": 0.0}
MAMBA = {"num_classes": 3, "num_mel_bins": 64, "d_model": 16, "n_layers": 2}


def test_settings_the_model_or_data_never_read_are_named() -> None:
    cnn, mamba = build_model("resnet_cnn", CNN), build_model("streaming_mamba", MAMBA)
    assert inert_settings(TrainConfig(), cnn) == [] and inert_settings(TrainConfig(), mamba) == []
    decay = TrainConfig(layer_decay=0.75)
    assert [
        "train.layer_decay = 0.75 does nothing for ResNetCNN" in n for n in inert_settings(decay, cnn)
    ] == [True]
    assert inert_settings(decay, mamba) == []  # a stack of layers: it applies
    untaught = TrainConfig(distill=DistillConfig(temperature=4.0, weight=0.9))
    assert inert_settings(untaught, cnn) == [
        "train.distill.temperature, train.distill.weight: no effect without train.distill.teachers"
    ]
    taught = DistillConfig(teachers=["t.safetensors"], dist_target="soft", stream_targets="prefix")
    said = inert_settings(TrainConfig(distill=taught), cnn)
    assert len(said) == 2 and "no distillation token" in said[0] and "training on streams" in said[1]
    clips = TrainConfig(sequences=SequenceConfig(mix_prob=0.5, gap_max_s=5.0))
    assert inert_settings(clips, mamba) == [
        "train.sequences.gap_max_s, train.sequences.mix_prob: no effect while train.sequences.length_s is 0 "
        "(training on clips, not streams)"
    ]
    streams = TrainConfig(sequences=SequenceConfig(length_s=20.0, mix_prob=0.5))
    assert inert_settings(streams, mamba) == []


def test_a_training_run_warns_of_them(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((6, 300, 64)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    info = ModelInfo(
        "resnet_cnn", CNN, ["a", "b", "c"], FeatureConfig(num_mel_bins=64), Normalization(target_frames=300)
    )
    cfg = TrainConfig(epochs=1, batch_size=3, precision="fp32", eval_every=0, layer_decay=0.5)
    train_model(build_model("resnet_cnn", CNN), (x, y), None, cfg, info, tmp_path / "run", progress=False)
    err = capsys.readouterr().err
    assert "streamd: warning: run: train.layer_decay = 0.5 does nothing for ResNetCNN" in err


def test_mixing_keys_nothing_reads_are_named() -> None:
    """mixup_alpha with mixup_prob 0 (nothing mixed) was accepted unsaid; so were the others here."""
    from training.augment import AugmentConfig

    cnn, mamba = build_model("resnet_cnn", CNN), build_model("streaming_mamba", MAMBA)
    unmixed = TrainConfig(augment=AugmentConfig(mixup_alpha=0.9, mixup_prob=0.0))
    assert inert_settings(unmixed, cnn) == [
        "train.augment.mixup_alpha: no effect while train.augment.mixup_prob is 0 (nothing is mixed)"
    ]
    bc = TrainConfig(augment=AugmentConfig(mixing="bc", mixup_alpha=0.2))
    assert inert_settings(bc, cnn) == [
        'train.augment.mixup_alpha: no effect with mixing = "bc" (its ratio is uniform)'
    ]
    assert inert_settings(TrainConfig(augment=AugmentConfig(mixing="bc")), cnn) == []  # the shipped recipe
    streams = SequenceConfig(length_s=20.0)
    on_streams = TrainConfig(sequences=streams, augment=AugmentConfig(mixup_prob=0.5, mixing="bc"))
    said = inert_settings(on_streams, mamba)
    assert said == [
        "train.augment.mixup_prob is for clip batches; streams mix train.sequences.mix_prob",
        "train.augment.mixing: no effect while train.sequences.mix_prob is 0 (nothing is mixed)",
    ]
    quiet = TrainConfig(
        sequences=SequenceConfig(length_s=20.0, mix_prob=0.5), augment=AugmentConfig(mixup_prob=0.0)
    )
    assert inert_settings(quiet, mamba) == []  # the shipped stream recipes' settings
