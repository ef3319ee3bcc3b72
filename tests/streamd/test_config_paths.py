"""Paths in a daemon config file are relative to that file, every one of them by the one rule; paths on the
command line stay relative to the working folder; errors found after parsing name the file that set the
setting, as the config's own errors do."""

from __future__ import annotations

import argparse
import typing
from dataclasses import fields
from pathlib import Path

import pytest
from support.fixtures import free_tcp_port
from support.process import StreamdProcess

from streamd.cli import main
from streamd.config import DaemonConfig, load_config
from streamd.config_cli import add_daemon_arguments, config_from_args
from streamd.errors import ConfigError


def _path_settings() -> list[tuple[str, str]]:
    """(section, key) of every path setting the daemon config declares."""
    hints = typing.get_type_hints(DaemonConfig)
    return [(s, f.name) for s in hints for f in fields(hints[s]) if f.metadata.get("path")]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_daemon_arguments(parser)
    return parser.parse_args(list(argv))


def test_every_path_setting_in_a_file_is_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint was; the clips' folder and the CA file were relative to the working folder (under
    systemd ``/``). Every setting declared a path is now, and the command line's stay where they were."""
    settings = _path_settings()
    assert {("model", "checkpoint"), ("clips", "dir"), ("mqtt", "ca_file")} <= set(settings)
    (tmp_path / "etc").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    config = tmp_path / "etc" / "daemon.toml"
    config.write_text("".join(f'[{section}]\n{key} = "sub/{key}"\n' for section, key in settings))
    cfg = load_config(config)
    for section, key in settings:
        assert getattr(getattr(cfg, section), key) == str(tmp_path / "etc" / "sub" / key), (section, key)
    monkeypatch.chdir(tmp_path)  # a config file named by a relative path: the same
    assert load_config(Path("etc/daemon.toml")).clips.dir == str(tmp_path / "etc" / "sub" / "dir")
    monkeypatch.chdir(tmp_path / "work")
    cli = config_from_args(_args("--config", str(config), "--save-clips", "here", "--checkpoint", "m.st"))
    assert (cli.clips.dir, cli.model.checkpoint) == ("here", "m.st")  # the working folder's
    assert cli.mqtt.ca_file == str(tmp_path / "etc" / "sub" / "ca_file")
    config.write_text('[clips]\ndir = ""\n[mqtt]\nca_file = "/abs/ca.pem"\n')
    assert (load_config(config).clips.dir, load_config(config).mqtt.ca_file) == ("", "/abs/ca.pem")
    config.write_text('[clips]\ndir = "  "\n')
    with pytest.raises(ConfigError, match=rf"^{config}: clips\.dir '  ' is blank"):
        load_config(config)


def test_a_config_files_clips_folder_is_beside_it_and_the_options_in_the_working_folder(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path
) -> None:
    """A real daemon run from another folder: ``[clips] dir = "relclips"`` writes beside the config file
    (before: into the working folder); ``--save-clips relclips`` into the working folder."""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "work").mkdir()
    config = tmp_path / "cfg" / "daemon.toml"
    config.write_text('[events]\nallow = ["dog"]\nthreshold = 0.0\nmin_hits = 1\n[clips]\ndir = "relclips"\n')
    base = ["replay", clips[0], "--speed", "max", "--checkpoint", small_checkpoint, "--no-dashboard"]
    base += ["--config", config, "--json"]
    runs = [
        ([], tmp_path / "cfg" / "relclips"),
        (["--save-clips", "relclips"], tmp_path / "work" / "relclips"),
    ]
    for extra, folder in runs:
        port = ["--publish", f"tcp://127.0.0.1:{free_tcp_port()}"]
        result = StreamdProcess([*base, *port, *extra], cwd=tmp_path / "work").start().wait(120)
        assert result.returncode == 0, result.describe()
        saved = [m["clip"] for m in result.json_lines() if m["type"] == "event" and "clip" in m]
        assert saved and all(Path(tmp_path / "work", c).parent == folder for c in saved), saved
        assert list(folder.glob("*.flac"))
    assert not (tmp_path / "relclips").exists()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[mqtt]\nurl = "mqtt://127.0.0.1:1"\nbinary_sensors = ["dgo"]\n',
            "mqtt.binary_sensors: unknown label 'dgo'",
        ),
        ('[clips]\ndir = "c"\nlabels = ["dgo"]\n', "clips.labels: unknown label 'dgo' (did you mean dog?)"),
        ('[events]\nallow = ["dgo"]\n', "events.allow: unknown label 'dgo'"),
        (
            '[mqtt]\nurl = "mqtt://127.0.0.1:1"\ntypes = ["predictions"]\n',
            "mqtt.types: unknown message types",
        ),
        (
            '[mqtt]\nurl = "mqtts://127.0.0.1:1"\nca_file = "ca.pem"\n',
            "mqtt.ca_file {dir}/ca.pem: No such file",
        ),
        ('[mqtt]\nurl = "http://broker"\n', "mqtt.url: expected mqtt://HOST:PORT"),
        ('[clips]\ndir = "afile/c"\n', "clips.dir {dir}/afile/c: cannot create the folder"),
    ],
)
def test_errors_found_after_parsing_name_the_config_file(
    tmp_path: Path,
    clips: list[Path],
    small_checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
    toml: str,
    message: str,
) -> None:
    """Label checks, the MQTT sink's and the clips folder's settings are checked once the model is known
    or the integration is built: their one line names the file as ``FILE: key ...`` (before: the key only)."""
    config = tmp_path / "c.toml"
    config.write_text(toml)
    (tmp_path / "afile").write_text("")
    code = main(
        [
            *["replay", str(clips[0]), "--checkpoint", str(small_checkpoint), "--no-dashboard", "--check"],
            *["--publish", f"tcp://127.0.0.1:{free_tcp_port()}", "--config", str(config)],
        ]
    )
    err = capsys.readouterr().err
    expected = f"streamd: error: {config}: {message.format(dir=tmp_path)}"
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(expected), err


def test_an_option_names_itself_not_a_file(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same settings given on the command line keep the option's name and no file."""
    config = tmp_path / "c.toml"
    config.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1"\n')
    code = main(
        [
            *["replay", str(clips[0]), "--checkpoint", str(small_checkpoint), "--no-dashboard", "--check"],
            *["--publish", f"tcp://127.0.0.1:{free_tcp_port()}", "--config", str(config)],
            *["--mqtt", "http://broker"],
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("streamd: error: --mqtt: expected mqtt://HOST:PORT"), err
