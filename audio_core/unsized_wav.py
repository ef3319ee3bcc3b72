"""A WAV file whose header says no length (RIFF and data sizes 0, as a writer that could not seek back
leaves them), read to its end.

libsndfile reads no audio from such a file (it trusts the data size of 0), though ``wav_header`` counts
size 0 as no promise. ``reopen_unsized`` opens the file again through a view whose header states the length
the file has (``wav_header.unsized_patch``), so every encoding libsndfile reads is read whole; the view
owns its descriptor and is closed with the handle.
"""

from __future__ import annotations

import io
import os
from typing import Any

import soundfile as sf

from audio_core.wav_header import WAV_FORMATS, unsized_patch


class _PatchedView(io.RawIOBase):
    """The file open as ``fd`` (read with ``pread``), with ``patch`` (offset -> bytes) laid over it."""

    def __init__(self, fd: int, patch: dict[int, bytes]) -> None:
        super().__init__()
        self.fd, self.patch, self.position = fd, patch, 0
        self.size = os.fstat(fd).st_size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:  # a writable buffer (a memoryview, a cffi buffer)
        data = bytearray(os.pread(self.fd, len(buffer), self.position))
        for at, replacement in self.patch.items():  # the parts of each patch inside this read
            first, last = max(at, self.position), min(at + len(replacement), self.position + len(data))
            if first < last:
                data[first - self.position : last - self.position] = replacement[first - at : last - at]
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


class _ViewedSoundFile(sf.SoundFile):
    """A ``SoundFile`` read through a ``_PatchedView``, which it closes with itself."""

    def __init__(self, view: _PatchedView) -> None:
        self._view = view
        super().__init__(view)

    def close(self) -> None:
        super().close()
        self._view.close()


def reopen_unsized(handle: sf.SoundFile, fd: int) -> sf.SoundFile:
    """``handle`` (open on the regular file ``fd``), or, when it reads no frames because its header says
    no length, a new handle that reads the file to its end (``handle`` closed)."""
    if handle.frames != 0 or handle.format not in WAV_FORMATS:
        return handle
    patch = unsized_patch(fd)
    if patch is None:
        return handle
    view = _PatchedView(os.dup(fd), patch)
    handle.close()
    try:
        return _ViewedSoundFile(view)
    except BaseException:
        view.close()
        raise
