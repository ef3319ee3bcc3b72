"""Input devices as PortAudio lists them, and the choice of one from ``--device`` (mic, index or name).

sounddevice is imported lazily: without the PortAudio library it raises OSError at import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamd.errors import AudioInputError, ConfigError


def sounddevice_module() -> Any:
    """Import sounddevice lazily: without the PortAudio library it raises OSError at import."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioInputError(f"cannot use audio devices: the PortAudio library is missing ({exc})") from None
    return sounddevice


@dataclass(frozen=True)
class DeviceInfo:
    """An input device as PortAudio lists it."""

    index: int
    name: str
    channels: int
    default_samplerate: float
    hostapi: str
    is_default: bool


def list_input_devices() -> list[DeviceInfo]:
    """Every device with input channels; empty when PortAudio sees none."""
    sd = sounddevice_module()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in = sd.default.device[0]
    except sd.PortAudioError as exc:
        raise AudioInputError(f"cannot query audio devices: {exc}") from None
    out = []
    for dev in devices:
        if dev["max_input_channels"] <= 0:
            continue
        out.append(
            DeviceInfo(
                index=int(dev["index"]),
                name=str(dev["name"]),
                channels=int(dev["max_input_channels"]),
                default_samplerate=float(dev["default_samplerate"]),
                hostapi=str(hostapis[dev["hostapi"]]["name"]),
                is_default=int(dev["index"]) == default_in,
            )
        )
    return out


def _device_list_text(devices: list[DeviceInfo]) -> str:
    return "; ".join(f"{d.index}: {d.name}" for d in devices) or "none"


def resolve_input_device(spec: str | int) -> DeviceInfo:
    """``mic``/``default`` (the default input), an index, or a case-insensitive name substring."""
    text = str(spec).strip()
    if not text:
        raise AudioInputError("--device: empty device name; use 'mic', a device index or part of its name")
    devices = list_input_devices()
    if not devices:
        _refuse_a_file(text)
        raise AudioInputError("no audio input device found (PortAudio lists none)")
    if text.lower() in ("mic", "default"):
        default = [d for d in devices if d.is_default]
        if not default:
            raise AudioInputError(
                f"no default input device; choose one with --device: {_device_list_text(devices)}"
            )
        return default[0]
    if text.lstrip("-").isdigit():
        for dev in devices:
            if dev.index == int(text):
                return dev
        raise AudioInputError(
            f"no input device with index {text}; input devices: {_device_list_text(devices)}"
        )
    exact = [d for d in devices if d.name.lower() == text.lower()]
    matches = exact or [d for d in devices if text.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        _refuse_a_file(text)
        raise AudioInputError(
            f"no input device matches {text!r}; input devices: {_device_list_text(devices)}"
        )
    raise AudioInputError(f"{text!r} matches several input devices: {_device_list_text(matches)}")


def _refuse_a_file(text: str) -> None:
    """A ``--device`` that names no device but a recording: say how to classify it."""
    try:
        is_file = Path(text).is_file()
    except OSError:  # a name too long for a path: a device name, not a file
        return
    if is_file:
        raise AudioInputError(
            f"--device {text}: a file, not an input device; classify it with 'streamd replay {text}' "
            "(--speed 1 for live pace)"
        )


def check_distinct_devices(specs: list[str], is_url: Callable[[str], bool]) -> None:
    """Refuse two ``--device`` options that name one input (the same device by index, name or "mic", or
    the same URL): it would be captured twice as two streams, each classified."""
    seen: dict[object, str] = {}
    for spec in specs:
        key: object = ("url", spec) if is_url(spec) else resolve_input_device(spec).index
        if key in seen:
            what = spec if is_url(spec) else f"device {key}: {resolve_input_device(spec).name}"
            raise ConfigError(
                f"--device {seen[key]} and --device {spec} are the same input ({what}); give it once"
            )
        seen[key] = spec
