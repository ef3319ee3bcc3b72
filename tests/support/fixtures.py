"""pytest fixtures of the live and fault suites (their conftest files import them from here)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.bad_files import build_catalogue, restore_permissions
from support.checkpoints import small_resnet_checkpoint
from support.paths import ESC50, ESC50_CSV, esc50_labels
from support.virtual_mic import VirtualMic, VirtualMicUnavailable, start_virtual_mic

# A loud, busy ESC-10 clip (chainsaw, fold 1, CC BY 3.0): 5 s, 16 kHz mono.
KNOWN_CLIP = "1-116765-A-41.flac"
REQUIRE_LIVE_ENV = "STREAMD_REQUIRE_LIVE"  # set to 1 (as .ci/run does) to fail instead of skip


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it where the live path is required (CI)."""
    if os.environ.get(REQUIRE_LIVE_ENV) == "1":
        pytest.fail(f"{reason} (and {REQUIRE_LIVE_ENV}=1)")
    pytest.skip(reason)


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def endpoint() -> str:
    """A fresh loopback endpoint for one test's publisher."""
    return f"tcp://127.0.0.1:{free_tcp_port()}"


@pytest.fixture(scope="session")
def labels() -> list[str]:
    if not ESC50_CSV.exists():
        pytest.skip(f"ESC-50 not found at {ESC50}")
    return esc50_labels()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, labels: list[str]) -> Path:
    """A small random-weight (seeded) residual CNN checkpoint with the 50 ESC-50 labels."""
    return small_resnet_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.safetensors", labels)


@pytest.fixture(scope="session")
def known_clip(labels: list[str]) -> Path:
    """The real recording the suites feed and replay."""
    return ESC50 / "audio" / KNOWN_CLIP


@pytest.fixture(scope="session")
def known_audio(known_clip: Path) -> np.ndarray:
    data, rate = sf.read(known_clip, dtype="float32")
    assert rate == 16000 and data.ndim == 1
    return data


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory: pytest.TempPathFactory, known_audio: np.ndarray) -> Iterator[Path]:
    """The directory of the generated bad-file catalogue (see ``support.bad_files.CATALOGUE``)."""
    root = build_catalogue(tmp_path_factory.mktemp("catalogue"), known_audio)
    yield root
    restore_permissions(root)  # so that pytest can remove it


def _short_tempdir(prefix: str) -> Path:
    """A short path under /tmp: the PulseAudio socket path must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if Path("/tmp").is_dir() else None))


def _start_private_mic(prefix: str) -> VirtualMic:
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        skip_or_fail("PulseAudio is not installed (apt: pulseaudio pulseaudio-utils libasound2-plugins)")
    directory = _short_tempdir(prefix)
    try:
        return start_virtual_mic(directory)
    except VirtualMicUnavailable as exc:
        shutil.rmtree(directory, ignore_errors=True)
        skip_or_fail(f"cannot start the PulseAudio virtual microphone: {exc}")
        raise


def _release(mic: VirtualMic) -> None:
    if mic.owned:
        mic.stop()
        shutil.rmtree(mic.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def virtual_mic() -> Iterator[VirtualMic]:
    """The virtual microphone ``.ci/run`` set up (``STREAMD_VMIC_DIR``), else a private one."""
    given = os.environ.get("STREAMD_VMIC_DIR")
    if given:
        mic = VirtualMic(Path(given), int(os.environ.get("STREAMD_VMIC_RATE", "16000")), owned=False)
        if mic.running():
            yield mic
            return
    mic = _start_private_mic("svm-")
    try:
        yield mic
    finally:
        _release(mic)


@pytest.fixture()
def private_virtual_mic() -> Iterator[VirtualMic]:
    """A virtual microphone of this test's own, which it may kill and restart."""
    mic = _start_private_mic("svmp-")
    try:
        yield mic
    finally:
        _release(mic)
