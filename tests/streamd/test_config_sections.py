"""Each daemon config section checks its own values: a bad value in any section is one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from audio_core.checks import check_choice, check_range
from streamd.config import load_config
from streamd.errors import ConfigError

BAD = {
    "model": ('compute = "tpu"', "model.compute must be one of auto, cpu, cuda"),
    "windows": ("hop_s = 0", "windows.hop_s must be positive"),
    "engine": ("max_batch = 5000", "engine.max_batch must be at most 1024"),
    "capture": ("ring_s = 0.01", "capture.ring_s must be >= 0.5"),  # a tiny ring lost most of the audio
    "publish": ("top_k = 0", "publish.top_k must be positive"),
    "events": ("threshold = 2.0", "events.threshold"),
    "mqtt": ("qos = 3", "mqtt.qos must be one of 0, 1, 2"),
    "clips": ("pre_roll_s = -1.0", "clips.pre_roll_s must be >= 0"),
}


@pytest.mark.parametrize("section", sorted(BAD))
def test_a_bad_value_in_each_section_is_one_line_naming_the_key(section: str, tmp_path: Path) -> None:
    line, expected = BAD[section]
    path = tmp_path / "daemon.toml"
    path.write_text(f"[{section}]\n{line}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_the_shared_checker_bounds_and_choices() -> None:
    check_range(1.0, "a.b", gt=0, le=1)
    check_choice("x", ("x", "y"), "a.c")
    for value in (0, float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match=r"a\.b must be"):
            check_range(value, "a.b", gt=0, le=10)
    with pytest.raises(ValueError, match=r"a\.c must be one of 0, 1, got True"):
        check_choice(True, (0, 1), "a.c")
