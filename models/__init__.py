"""streamd's classifiers: AST, Audio-Mamba, a causal streaming Mamba and log-mel CNNs.

This package imports nothing from ``streamd`` or ``training``.
"""

from models.common import (
    DATASET_STATS,
    FeatureConfig,
    ModelInfo,
    Normalization,
    RecurrentClassifier,
    WindowedClassifier,
)
from models.registry import available_archs, build_model, make_config

__all__ = [
    "DATASET_STATS",
    "FeatureConfig",
    "ModelInfo",
    "Normalization",
    "RecurrentClassifier",
    "WindowedClassifier",
    "available_archs",
    "build_model",
    "make_config",
]
