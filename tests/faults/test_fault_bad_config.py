"""Bad configuration files and bad checkpoints: one clear line naming the file and the problem.

Each case runs ``streamd replay`` (and, for checkpoints, ``streamd classify``) on a real clip in this
process and checks the exit code and the single error line; nothing may start publishing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models import FeatureConfig, ModelInfo, build_model
from models.checkpoint import FORMAT, save_checkpoint
from streamd.cli import main

CONFIG_EXIT = 2  # ConfigError / CheckpointError (StreamdError's default status)

BAD_CONFIGS = {
    # name: (TOML text, fragments the error line must contain)
    "unknown_section": ("[modle]\nname = 'default'\n", ["modle", "unknown key"]),
    "unknown_key": ("[windows]\nhop = 1.0\n", ["windows.hop", "unknown key"]),
    "wrong_type": ("[windows]\nhop_s = 'one'\n", ["windows.hop_s", "expected float"]),
    "wrong_table_type": ("windows = 3\n", ["windows", "expected a table"]),
    "negative": ("[windows]\nwindow_s = -5.0\n", ["windows.window_s", "must be positive"]),
    "bad_choice": ("[engine]\noverload = 'sometimes'\n", ["engine.overload", "drop_oldest"]),
    "bad_hop_grid": ("[windows]\nhop_s = 0.0123\n", ["hop"]),
    "not_toml": ("[windows\nhop_s = 1\n", ["invalid toml"]),
    "bool_for_int": ("[publish]\ntop_k = true\n", ["publish.top_k", "expected int"]),
}


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, list[str]]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def replay_args(clip: Path, *extra: str | Path) -> list[str | Path]:
    return [
        "replay",
        clip,
        "--speed",
        "max",
        "--publish",
        "inproc://bad-config",
        "--no-dashboard",
        "--json",
        *extra,
    ]


def assert_one_line(
    code: int, out: str, errors: list[str], *fragments: str, exit_code: int = CONFIG_EXIT
) -> str:
    assert code == exit_code, (code, errors)
    assert out == "", "nothing may be published"
    assert len(errors) == 1 and errors[0].startswith("streamd: error: "), errors
    for fragment in fragments:
        assert fragment.lower() in errors[0].lower(), (fragment, errors[0])
    return errors[0]


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_daemon_config_is_named_with_its_key(
    name: str, tmp_path: Path, known_clip: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, fragments = BAD_CONFIGS[name]
    config = tmp_path / f"{name}.toml"
    config.write_text(text)
    result = run_cli(capsys, *replay_args(known_clip, "--config", config, "--checkpoint", checkpoint))
    line = assert_one_line(*result, *fragments)
    if name != "bad_hop_grid":  # a value that type-checks but the window plan rejects
        assert str(config) in line


def test_missing_config_file(tmp_path: Path, known_clip: Path, checkpoint: Path, capsys) -> None:
    missing = tmp_path / "nowhere.toml"
    result = run_cli(capsys, *replay_args(known_clip, "--config", missing, "--checkpoint", checkpoint))
    assert_one_line(*result, str(missing), "no such config file")


def test_model_config_without_checkpoint(tmp_path: Path, known_clip: Path, capsys) -> None:
    model_toml = tmp_path / "model.toml"
    model_toml.write_text("[windows]\nhop_s = 1.0\n")
    result = run_cli(capsys, *replay_args(known_clip, "--model", model_toml))
    assert_one_line(*result, str(model_toml), "checkpoint")


# -- checkpoints ------------------------------------------------------------------------------------------


def _info(labels: list[str], arch: str = "resnet_cnn", config: dict | None = None) -> ModelInfo:
    config = config or {"num_classes": len(labels), "channels": [8, 16, 32, 64], "num_mel_bins": 64}
    return ModelInfo(arch=arch, config=config, labels=labels, features=FeatureConfig(num_mel_bins=64))


def _other_arch(path: Path, labels: list[str]) -> None:
    """Weights of a Piczak CNN under metadata that says residual CNN."""
    torch.manual_seed(0)
    model = build_model("piczak_cnn", {"num_classes": len(labels), "num_mel_bins": 64})
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": FORMAT, "streamd": json.dumps(_info(labels).to_dict())})


def _other_labels(path: Path, labels: list[str]) -> None:
    """A 50-class model whose metadata lists only 10 labels."""
    torch.manual_seed(0)
    model = build_model("resnet_cnn", _info(labels).config)
    info = _info(labels)
    info.labels = labels[:10]
    save_checkpoint(path, model, info)


def _unknown_arch(path: Path, labels: list[str]) -> None:
    save_file(
        {"w": torch.zeros(2)},
        str(path),
        metadata={"format": FORMAT, "streamd": json.dumps(_info(labels, arch="transformer_xl").to_dict())},
    )


def _no_metadata(path: Path, labels: list[str]) -> None:
    save_file({"w": torch.zeros(2)}, str(path))


def _corrupt_metadata(path: Path, labels: list[str]) -> None:
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": FORMAT, "streamd": "{not json"})


def _garbage(path: Path, labels: list[str]) -> None:
    path.write_bytes(bytes(range(256)) * 64)


def _truncated(path: Path, labels: list[str], good: Path | None = None) -> None:
    assert good is not None
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path: Path, labels: list[str]) -> None:
    path.write_bytes(b"")


BAD_CHECKPOINTS = {
    # name: (writer, fragments of the error line)
    "other_architecture": (_other_arch, ["weights do not fit", "resnet_cnn"]),
    "other_label_set": (_other_labels, ["10 labels", "50 outputs"]),
    "unknown_architecture": (_unknown_arch, ["transformer_xl"]),
    "plain_safetensors": (_no_metadata, ["not a streamd checkpoint"]),
    "corrupt_metadata": (_corrupt_metadata, ["corrupt streamd metadata"]),
    "garbage": (_garbage, ["not a readable safetensors checkpoint"]),
    "truncated": (_truncated, []),
    "empty": (_empty, []),
}


@pytest.mark.parametrize("command", ["replay", "classify"])
@pytest.mark.parametrize("name", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_is_named_with_its_problem(
    name: str,
    command: str,
    tmp_path: Path,
    known_clip: Path,
    checkpoint: Path,
    labels: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    writer, fragments = BAD_CHECKPOINTS[name]
    path = tmp_path / f"{name}.safetensors"
    if writer is _truncated:
        _truncated(path, labels, good=checkpoint)
    else:
        writer(path, labels)
    if command == "replay":
        args = replay_args(known_clip, "--checkpoint", path)
    else:
        args = ["classify", known_clip, "--checkpoint", path]
    assert_one_line(*run_cli(capsys, *args), str(path), *fragments)


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_checkpoint_path_that_is_no_file(
    what: str, tmp_path: Path, known_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model.safetensors"
    if what == "directory":
        path.mkdir()
    expected = "no such checkpoint file" if what == "missing" else "directory"
    assert_one_line(*run_cli(capsys, *replay_args(known_clip, "--checkpoint", path)), str(path), expected)
