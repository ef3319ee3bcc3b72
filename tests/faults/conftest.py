"""The fault suite's fixtures (see ``support.fixtures``)."""

from support.fixtures import (  # noqa: F401
    catalogue,
    checkpoint,
    endpoint,
    known_audio,
    known_clip,
    labels,
    private_virtual_mic,
    virtual_mic,
)
