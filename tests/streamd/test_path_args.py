"""Every command line option naming a file or folder refuses an empty value in one line (an unset shell
variable had been read as the current folder: ``classify --windows --out ''`` ended in an internal error)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from streamd import cli
from streamd.path_args import path_arg


def _actions(command: str) -> list[argparse.Action]:
    parser = cli.build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices[command]._actions)


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_no_path_option_takes_a_plain_path(command: str) -> None:
    plain = [a.dest for a in _actions(command) if a.type is Path]
    assert not plain, f"streamd {command}: {plain} should use path_arg"


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["classify", "x.wav", "--windows", "--out", ""], "--out"),
        (["proxy", "--capture", ""], "--capture"),
        (["replay", "x.wav", "--config", ""], "--config"),
        (["evaluate", "--esc50", ""], "--esc50"),
        (["keys", ""], "DIR"),
    ],
)
def test_an_empty_path_is_one_line_and_exit_2(argv: list[str], option: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"streamd: error: argument {option}: is empty (give a path)"
    ]
    assert path_arg("clips/") == Path("clips")
