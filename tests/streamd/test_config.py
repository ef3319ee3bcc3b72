"""Daemon config: defaults, TOML layers, unknown keys and wrong types rejected with file and key named."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamd.cli import main
from streamd.config import DaemonConfig, load_config, load_model_toml, with_windows
from streamd.config_cli import add_daemon_arguments, config_from_args, hop_given
from streamd.errors import CheckpointError, ConfigError
from streamd.events import EventConfig
from streamd.model_loading import load_configured_model, load_named_model, resolve_device

REPO = Path(__file__).resolve().parents[2]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_daemon_arguments(parser)
    return parser.parse_args(list(argv))


def _toml(tmp_path: Path, text: str, name: str = "d.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_match_the_issue():
    cfg = DaemonConfig()
    assert (cfg.windows.window_s, cfg.windows.hop_s) == (None, 1.0)  # None: the checkpoint's own window
    assert (cfg.publish.top_k, cfg.publish.endpoint) == (5, "tcp://127.0.0.1:5556")
    assert cfg.publish.status_interval_s == 2.0
    assert (cfg.model.compute, cfg.model.precision) == ("auto", "auto")
    assert isinstance(cfg.events, EventConfig)
    assert cfg.overload_policy(live=True) == "drop_oldest" and cfg.overload_policy(live=False) == "block"
    assert cfg.queue_size(3, "block") == 3 and cfg.queue_size(3, "drop_oldest") == 12
    assert cfg.queue_size(3, "block", batch_floor=True) == 8  # replayed files: at least a full batch
    assert cfg.queue_size(20, "block", batch_floor=True) == 20
    assert cfg.queue_size(3, "drop_oldest", batch_floor=True) == 12
    cfg.engine.queue_size = 5
    assert cfg.queue_size(3, "block") == 5


def test_the_shipped_daemon_toml_spells_out_the_defaults():
    assert load_config(REPO / "configs" / "daemon.toml") == DaemonConfig()


def test_a_file_overrides_only_what_it_sets(tmp_path):
    path = _toml(
        tmp_path, '[windows]\nhop_s = 0.5\n[engine]\noverload = "block"\n[events.thresholds]\ndog = 0.8\n'
    )
    cfg = load_config(path)
    assert cfg.windows.hop_s == 0.5 and cfg.windows.window_s is None
    assert cfg.overload_policy(live=True) == "block"
    assert cfg.events.threshold_for("dog") == 0.8 and cfg.events.threshold_for("cat") == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[windows]\nwindow = 5.0\n", "windows.window: unknown key"),
        ("[window]\nhop_s = 1.0\n", "window: unknown key"),
        ('[windows]\nwindow_s = "5"\n', "windows.window_s: expected float, got str"),
        ("[publish]\ntop_k = 2.5\n", "publish.top_k: expected int, got float"),
        ("[publish]\ntop_k = true\n", "publish.top_k: expected int, got bool"),
        ("[events]\nallow = [1]\n", "events.allow[0]: expected str"),
        ("[events]\nthresholds = {dog = 'x'}\n", "events.thresholds.dog: expected float"),
        ("[events]\nhold = 1.0\n", "events.hold: unknown key"),
        ("windows = 3\n", "windows: expected a table"),
        ('[engine]\noverload = "newest"\n', "engine.overload must be one of"),
        ('[model]\ncompute = "tpu"\n', "model.compute must be one of"),
        ("[windows]\nhop_s = -1.0\n", "windows.hop_s must be positive"),
        ("[engine]\nthreads = -2\n", "engine.threads must be >= 0"),
        ("[events]\nmin_hits = 0\n", "events.min_hits must be an integer >= 1"),
        ("[windows\n", "invalid TOML"),
    ],
)
def test_bad_files_name_the_file_and_the_key(tmp_path, text, message):
    path = _toml(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a folder, not a config file"):
        load_config(tmp_path)


def test_model_toml_checkpoint_is_relative_to_the_file(tmp_path):
    (tmp_path / "models").mkdir()
    path = _toml(
        tmp_path / "models", '[model]\ncheckpoint = "../ck/m.safetensors"\nprecision = "bf16"\n', "m.toml"
    )
    table = load_model_toml(path)
    assert table["model"]["checkpoint"] == str((tmp_path / "ck" / "m.safetensors").resolve())
    with pytest.raises(ConfigError, match=r"needs \[model\] checkpoint = \"PATH\" or name = \"NAME\""):
        load_model_toml(_toml(tmp_path, "[windows]\nhop_s = 2.0\n"))


def test_a_model_toml_may_name_a_shipped_model(tmp_path, capsys):
    """``[model] name = "recurrent"`` was taken by --config and refused by classify --model (the one
    rule of --model is now both)."""
    path = _toml(tmp_path, '[model]\nname = "recurrent"\n', "rec.toml")
    assert load_model_toml(path)["model"]["name"] == "recurrent"
    clip = tmp_path / "tone.wav"
    sf.write(clip, (0.1 * np.sin(np.arange(16000) * 0.3)).astype(np.float32), 16000)
    assert main(["classify", str(clip), "--model", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{clip}: ")
    # over a --config that names a checkpoint, the name wins, as --model NAME does
    config = _toml(tmp_path, '[model]\ncheckpoint = "ck.safetensors"\n', "d.toml")
    given = argparse.Namespace(config=str(config), model=str(path), checkpoint=None)
    for model in (str(path), "recurrent"):
        given.model = model
        section = config_from_args(given).model
        assert (section.name, section.checkpoint) == ("recurrent", None)


@pytest.mark.parametrize("value", ['""', '"  "'])
def test_an_empty_checkpoint_is_refused_not_taken_as_the_files_folder(tmp_path, value):
    empty = _toml(tmp_path, f"[model]\ncheckpoint = {value}\n")
    for read in (load_model_toml, load_config):
        with pytest.raises(ConfigError, match=r"model\.checkpoint is empty"):
            read(empty)


def test_command_line_layers_win_in_order(tmp_path):
    daemon = _toml(tmp_path, '[windows]\nhop_s = 0.5\nwindow_s = 3.0\n[model]\nprecision = "bf16"\n')
    model = _toml(
        tmp_path, '[model]\ncheckpoint = "x.safetensors"\n[windows]\nwindow_s = 2.0\n', "model.toml"
    )
    cfg = config_from_args(
        _args("--config", str(daemon), "--model", str(model), "--hop", "0.25", "--top-k", "3")
    )
    assert cfg.windows.window_s == 2.0  # the model file beats --config
    assert cfg.windows.hop_s == 0.25  # the flag beats both
    assert cfg.model.precision == "bf16" and cfg.publish.top_k == 3
    assert cfg.model.checkpoint == str((tmp_path / "x.safetensors").resolve())
    cfg = config_from_args(_args("--model", str(model), "--checkpoint", "other.safetensors"))
    assert cfg.model.checkpoint == "other.safetensors"
    cfg = config_from_args(_args("--config", str(daemon), "--model", "recurrent"))
    assert (cfg.model.name, cfg.model.checkpoint) == ("recurrent", None)


def test_off_on_the_command_line_turns_off_what_a_config_file_turns_on(tmp_path):
    daemon = _toml(
        tmp_path, '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n[metrics]\nlisten = "9109"\n[clips]\ndir = "c"\n'
    )
    cfg = config_from_args(_args("--config", str(daemon)))
    clips = str(tmp_path / "c")  # relative to the file
    assert (cfg.mqtt.url, cfg.metrics.listen, cfg.clips.dir) == ("mqtt://127.0.0.1:1883", "9109", clips)
    cfg = config_from_args(
        _args("--config", str(daemon), "--mqtt", "off", "--metrics", "OFF", "--save-clips", "off")
    )
    assert (cfg.mqtt.url, cfg.metrics.listen, cfg.clips.dir) == ("", "", "")


def test_bad_option_values_are_config_errors():
    with pytest.raises(ConfigError, match=r"windows\.hop_s must be positive"):
        config_from_args(_args("--hop", "0"))
    with pytest.raises(ConfigError, match=r"publish\.top_k must be positive"):
        config_from_args(_args("--top-k", "0"))
    with pytest.raises(ConfigError, match=r"windows\.window_s must be a finite number, got nan"):
        with_windows(DaemonConfig(), float("nan"), 1.0)


def test_the_model_section_picks_a_checkpoint_or_a_shipped_model(small_checkpoint, tmp_path):
    cfg = config_from_args(_args("--checkpoint", str(small_checkpoint), "--compute", "cpu"))
    loaded = load_configured_model(cfg.model)
    assert loaded.name == "small" and loaded.device.type == "cpu" and len(loaded.info.labels) == 50
    for name in ("default", "recurrent"):
        try:
            load_named_model(name, compute="cpu")
        except CheckpointError as exc:
            assert "not installed" in str(exc) and "--checkpoint" in str(exc)
    with pytest.raises(ConfigError, match="unknown model 'big'"):
        load_named_model("big")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_configured_model(
            config_from_args(_args("--checkpoint", str(tmp_path / "none.safetensors"))).model
        )
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(small_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"broken\.safetensors"):
        load_configured_model(config_from_args(_args("--checkpoint", str(broken))).model)


def test_compute_devices():
    import torch

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device("cuda")


def test_integration_labels_are_checked_only_while_the_integration_is_on():
    from streamd.label_check import check_daemon_labels

    cfg = DaemonConfig()
    cfg.mqtt.binary_sensors, cfg.clips.labels = ["dgo"], ["ct"]
    check_daemon_labels(cfg, ["dog", "cat"])  # MQTT and clips are off: their labels are not in use
    cfg.clips.dir = "clips"
    with pytest.raises(ConfigError, match=r"clips\.labels: unknown label 'ct' \(did you mean cat\?\)"):
        check_daemon_labels(cfg, ["dog", "cat"])
    cfg.clips.dir, cfg.mqtt.url = "", "mqtt://127.0.0.1:1883"
    with pytest.raises(ConfigError, match=r"mqtt\.binary_sensors: unknown label 'dgo'"):
        check_daemon_labels(cfg, ["dog", "cat"])


def test_a_hop_is_given_by_the_command_line_or_a_file_even_at_the_default(tmp_path: Path) -> None:
    """A recurrent model warns about any hop asked for, so one equal to the default counts too."""
    assert not hop_given(_args())
    assert hop_given(_args("--hop", "1.0"))
    same = _toml(tmp_path, "[windows]\nhop_s = 1.0\n")
    assert hop_given(_args("--config", str(same)))
    other = _toml(tmp_path, "[publish]\ntop_k = 3\n", "other.toml")
    assert not hop_given(_args("--config", str(other)))
    model = _toml(tmp_path, '[model]\ncheckpoint = "m.safetensors"\n[windows]\nhop_s = 1.0\n', "m.toml")
    assert hop_given(_args("--model", str(model)))
    assert not hop_given(_args("--model", "recurrent"))
