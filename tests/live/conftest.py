"""The live suite's fixtures: the virtual microphone, a small checkpoint, the known recording."""

from support.fixtures import (  # noqa: F401
    checkpoint,
    endpoint,
    known_audio,
    known_clip,
    labels,
    private_virtual_mic,
    virtual_mic,
)
