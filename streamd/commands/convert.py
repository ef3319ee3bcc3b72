"""``streamd convert SRC OUT``: an official AST ``.pth``, a Hugging Face AST directory or an Audio-Mamba
``.pth`` -> a streamd checkpoint that ``run``, ``replay`` and ``classify`` take with ``--checkpoint OUT``.

Labels come from ``--labels CSV`` (AudioSet ``class_labels_indices.csv``, ESC-50 ``esc50.csv``, or a
``label``/``name`` column) or from the Hugging Face ``id2label``. Normalisation statistics come from
``--mean/--std``, ``--dataset``, or the Hugging Face ``preprocessor_config.json``; the window length
(``target_frames``) from ``--target-frames``, the dataset, the preprocessor's ``max_length`` or the model.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from streamd.errors import CheckpointError, ConfigError
from streamd.label_csv import read_labels_csv
from streamd.path_args import path_arg

HELP = (
    "convert an official AST .pth, a Hugging Face AST directory or an AuM .pth to a streamd checkpoint, "
    "or an ImageNet ViT/DeiT (timm .pth/.safetensors, Hugging Face directory) to an AST initialisation"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from models.common import DATASET_STATS

    parser.add_argument(
        "src",
        type=path_arg,
        metavar="SRC",
        help="AST .pth, Hugging Face AST directory, AuM .pth, or ViT/DeiT (timm file or HF directory)",
    )
    parser.add_argument("out", type=path_arg, metavar="OUT", help="the .safetensors checkpoint to write")
    parser.add_argument("--labels", type=path_arg, metavar="CSV", help="class labels CSV (for .pth sources)")
    parser.add_argument("--dataset", choices=sorted(DATASET_STATS), help="a dataset's statistics and window")
    parser.add_argument("--mean", type=float, help="fbank mean for (x - mean) / (2 std)")
    parser.add_argument("--std", type=float, help="fbank std for (x - mean) / (2 std)")
    parser.add_argument("--target-frames", type=int, metavar="N", help="the model's window in frames")
    parser.add_argument("--fstride", type=int, help="patch frequency stride (.pth: default from the recipes)")
    parser.add_argument("--tstride", type=int, help="patch time stride (.pth: default from the recipes)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--multi-label", dest="multi_label", action="store_true", default=None, help="sigmoid scores"
    )
    kind.add_argument("--single-label", dest="multi_label", action="store_false", help="softmax scores")


def _normalization(
    args: argparse.Namespace, pre: dict[str, Any], model_frames: int
) -> tuple[float, float, int]:
    """(mean, std, target_frames) from the options, the dataset preset or the preprocessor config, within
    the bounds a checkpoint takes (``models.metadata_check``)."""
    from models.common import DATASET_STATS
    from models.metadata_check import MAX_NORM_MEAN, MAX_NORM_STD

    if (args.mean is None) != (args.std is None):
        raise ConfigError("give both --mean and --std, or neither")
    preset = DATASET_STATS[args.dataset] if args.dataset else None
    prefix = "--"  # the options' values; a file's own are named by file and key
    if args.mean is not None:
        mean, std = args.mean, args.std
    elif preset:
        mean, std = preset[0], preset[1]
    elif "mean" in pre and "std" in pre:
        mean, std = float(pre["mean"]), float(pre["std"])
        prefix = f"{args.src}/preprocessor_config.json: "
    else:
        raise ConfigError("no normalisation statistics: give --dataset or --mean and --std")
    if not (math.isfinite(mean) and abs(mean) <= MAX_NORM_MEAN):
        raise ConfigError(f"{prefix}mean must be a finite number within +-{MAX_NORM_MEAN:.0f}, got {mean}")
    if not (0 < std <= MAX_NORM_STD):
        raise ConfigError(f"{prefix}std must be a positive number of at most {MAX_NORM_STD:.0f}, got {std}")
    frames = args.target_frames or (preset[2] if preset else None) or pre.get("max_length") or model_frames
    return float(mean), float(std), int(frames)


def _check_preprocessor(src: Path, pre: dict[str, Any]) -> None:
    """The Hugging Face preprocessor's settings: streamd's features, numbers where numbers belong."""
    from models.common import FeatureConfig

    features = FeatureConfig()
    whole = ("num_mel_bins", "sampling_rate", "max_length")
    for key in (k for k in (*whole, "mean", "std") if k in pre):
        value, where = pre[key], f"{src}/preprocessor_config.json: {key}"
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        if key in whole and not (float(value).is_integer() and value >= 1):
            raise ConfigError(f"{where} must be a positive whole number, got {value!r}")
    if int(pre.get("sampling_rate", features.sample_rate)) != features.sample_rate:
        raise CheckpointError(
            f"the model expects {pre['sampling_rate']} Hz audio; streamd uses {features.sample_rate}"
        )


def _convert_hf_dir(args: argparse.Namespace) -> tuple[str, Any, Any, list[str] | None, dict[str, Any]]:
    from models import convert_ast, weight_files

    state, hf, pre = weight_files.read_hf_dir(args.src)
    if not convert_ast.is_hf_layout(state):
        raise ValueError(f"{args.src}: weights are not a Hugging Face ASTForAudioClassification")
    _check_preprocessor(args.src, pre)
    if args.fstride is not None or args.tstride is not None:
        raise ConfigError(
            f"{args.src}: a Hugging Face AST sets its strides in config.json: drop --fstride/--tstride"
        )
    converted = convert_ast.from_hf(state)
    try:
        config = convert_ast.config_from_hf(hf, converted)
        labels = convert_ast.hf_labels(hf) if args.labels is None else None  # --labels replaces them
    except ValueError as exc:
        raise ValueError(f"{args.src}: {exc}") from None
    if int(pre.get("num_mel_bins", config.num_mel_bins)) != config.num_mel_bins:  # features are the model's
        raise CheckpointError(
            f"{args.src}: config.json has {config.num_mel_bins} mel bins, preprocessor_config.json "
            f"{pre['num_mel_bins']}"
        )
    return "hf-ast", config, convert_ast.build(config, converted), labels, pre


def _convert_pth(args: argparse.Namespace) -> tuple[str, Any, Any, list[str] | None, dict[str, Any]]:
    from models import convert_ast, convert_aum, weight_files

    state = weight_files.load_torch_state(args.src)
    if convert_ast.is_official_layout(state):
        converted = convert_ast.from_official(state)
        ast_config = convert_ast.config_from_state(
            converted, target_frames=args.target_frames, fstride=args.fstride, tstride=args.tstride
        )
        return "official-ast", ast_config, convert_ast.build(ast_config, converted), None, {}
    if convert_aum.is_aum_layout(state):
        converted = convert_aum.strip_module_prefix(state)
        strides = {"fstride": args.fstride or 16, "tstride": args.tstride or 16}
        aum_config = convert_aum.config_from_state(converted, target_frames=args.target_frames, **strides)
        return "aum", aum_config, convert_aum.build(aum_config, converted), None, {}
    if convert_ast.is_hf_layout(state):
        raise ValueError(
            f"{args.src}: Hugging Face weights: give the model directory (with config.json) instead"
        )
    raise ValueError(
        f"{args.src}: unknown layout (neither official AST, Hugging Face AST, Audio-Mamba nor ViT/DeiT)"
    )


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from models.common import FeatureConfig, ModelInfo, Normalization

    if not args.src.exists():
        raise CheckpointError(f"{args.src}: no such file or directory")
    _check_options(args)
    given = read_labels_csv(args.labels) if args.labels is not None else None  # refused before any write
    if _is_streamd_checkpoint(args.src):
        raise ConfigError(f"{args.src}: already a streamd checkpoint; use it as it is (--checkpoint, --init)")
    if _convert_image_model(args):
        return 0
    try:
        source, config, model, labels, pre = (
            _convert_hf_dir(args) if args.src.is_dir() else _convert_pth(args)
        )
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    labels = given if given is not None else labels
    if labels is None:
        raise ConfigError(f"{args.src}: holds no label names: give --labels CSV")
    if len(labels) != model.num_classes:
        raise ConfigError(f"{len(labels)} labels but the model has {model.num_classes} outputs")
    mean, std, frames = _normalization(args, pre, config.target_frames)
    multi_label = args.multi_label
    if multi_label is None:
        multi_label = args.dataset == "audioset" or (args.dataset is None and model.num_classes == 527)
    arch = "aum" if source == "aum" else "ast"
    info = ModelInfo(
        arch=arch,
        config=asdict(config),
        labels=labels,
        features=FeatureConfig(num_mel_bins=int(getattr(config, "num_mel_bins", 128))),  # the model's own
        normalization=Normalization(mean=mean, std=std, target_frames=frames),
        multi_label=bool(multi_label),
        extra={"converted_from": source, "source": args.src.name},
    )
    path = _save(args.out, model, info)
    print(
        f"{path}: {arch} ({source}), {len(labels)} labels, window {frames} frames, mean {mean:g}, std {std:g}"
    )
    return 0


def _save(out: Path, model: Any, info: Any) -> Path:
    """Write the checkpoint beside OUT and load it back as every command loads one (``load_checkpoint``:
    metadata in bounds, weights that fit, none NaN or infinite) before it takes OUT's name; a problem is
    one line naming OUT (and the tensor), nothing written."""
    from models.atomic_write import write_atomically
    from models.checkpoint import load_checkpoint, save_checkpoint

    def write_loadable(tmp: Path) -> None:
        try:
            save_checkpoint(tmp, model, info)
            load_checkpoint(tmp)
        except OSError as exc:  # the file system's refusal, named after OUT
            raise OSError(exc.errno, exc.strerror, str(out)) from None
        except ValueError as exc:  # "TMP: not saved: invalid metadata: ...", "TMP: weight W holds NaN ..."
            reason = str(exc).removeprefix(f"{tmp}: ").removeprefix("not saved: ")
            raise CheckpointError(f"{out}: not saved: {reason}") from None

    return write_atomically(out, write_loadable)


def _is_streamd_checkpoint(src: Path) -> bool:
    from models.checkpoint import read_info

    if not (src.is_file() and src.suffix == ".safetensors"):
        return False
    try:
        read_info(src)
    except ValueError:  # not one (or not a readable one): the conversion says what it is
        return False
    return True


def _check_options(args: argparse.Namespace) -> None:
    """Options and the output path, checked before any weight is read."""
    from models.metadata_check import MAX_TARGET_FRAMES
    from streamd.output_folders import usable_folder_path

    if args.target_frames is not None and not 16 <= args.target_frames <= MAX_TARGET_FRAMES:
        raise ConfigError(
            f"--target-frames must be in [16, {MAX_TARGET_FRAMES}] (60 s), got {args.target_frames}"
        )
    for name in ("fstride", "tstride"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.out.is_dir():
        raise ConfigError(f"OUT {args.out}: is a folder; give the checkpoint file to write")
    if args.out.exists() and args.out.samefile(args.src):
        raise ConfigError(f"OUT {args.out}: is SRC itself; write the converted checkpoint elsewhere")
    if args.src.is_dir() and args.out.resolve().is_relative_to(args.src.resolve()):
        raise ConfigError(
            f"OUT {args.out}: is inside SRC {args.src}; write the converted checkpoint elsewhere"
        )
    if args.out.exists() and not args.out.is_file():  # a device, a pipe, a socket: never replaced
        raise ConfigError(f"OUT {args.out}: is not a regular file; give the checkpoint file to write")
    if args.out.exists() and not args.force:
        raise ConfigError(f"OUT {args.out}: exists; give --force to replace it")
    usable_folder_path(args.out.parent, "OUT's folder")  # created only when the checkpoint is written


def _convert_image_model(args: argparse.Namespace) -> bool:
    """An ImageNet ViT/DeiT -> an AST initialisation for ``streamd train --init`` (``models.convert_vit``);
    False when ``args.src`` is not an image model."""
    from dataclasses import asdict

    from models import convert_vit
    from models.common import UNTRAINED_LABEL, FeatureConfig, ModelInfo, Normalization

    try:
        image = convert_vit.read_image_model(args.src)
        if image is None:
            return False
        state, hf = image
        options = (("--labels", args.labels), ("--multi-label/--single-label", args.multi_label))
        if given := [option for option, value in options if value is not None]:
            raise ConfigError(
                f"{args.src}: an ImageNet model converts to an untrained head, whose labels come from the "
                f"data --init fine-tunes it on: {', '.join(given)} does not apply"
            )
        features = FeatureConfig()
        mean, std, frames = _normalization(args, {}, 0)
        if not frames:
            raise ConfigError("an ImageNet model has no audio window: give --target-frames or --dataset")
        strides = {"fstride": args.fstride or 10, "tstride": args.tstride or 10}
        model = convert_vit.to_ast(state, hf, features.num_mel_bins, frames, **strides)
        config = model.cfg
    except ValueError as exc:
        message = str(exc)  # readers name the file themselves
        raise CheckpointError(
            message if message.startswith(str(args.src)) else f"{args.src}: {message}"
        ) from None
    info = ModelInfo(
        arch="ast",
        config=asdict(config),
        labels=[UNTRAINED_LABEL],  # the head is fresh: --init re-initialises it for the new labels
        features=features,
        normalization=Normalization(mean=mean, std=std, target_frames=frames),
        extra={"converted_from": "imagenet-" + (hf.get("model_type") or "timm"), "source": args.src.name},
    )
    path = _save(args.out, model, info)
    f_dim, t_dim = config.grid(frames)
    print(
        f"{path}: ast initialisation from an ImageNet {config.size} model ({config.depth} blocks of "
        f"{config.embed_dim}), patch grid {f_dim}x{t_dim}, window {frames} frames, mean {mean:g}, "
        f"std {std:g}; use it with streamd train --init (its head is untrained)"
    )
    return True
