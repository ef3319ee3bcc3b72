"""``streamd devices``: the audio input devices PortAudio sees (what ``run --device`` accepts)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from streamd.errors import AudioInputError
from streamd.input_devices import list_input_devices

HELP = "list audio input devices (index, name, channels, default rate)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per device")


def run(args: argparse.Namespace) -> int:
    devices = list_input_devices()
    if not devices:
        raise AudioInputError(
            "no audio input devices found: PortAudio lists none (no microphone, or no sound server running)"
        )
    for dev in devices:
        if args.json:
            print(json.dumps(asdict(dev)))
        else:
            mark = "*" if dev.is_default else " "
            print(
                f"{mark} {dev.index:3d}  {dev.name}  ({dev.channels} ch, "
                f"{dev.default_samplerate:g} Hz, {dev.hostapi})"
            )
    return 0
