"""MPEG audio (MP3) read in blocks without a seek between them.

python-soundfile's ``read`` asks for the position and seeks back to it after every block (tell, read,
seek). For MPEG audio libsndfile's seek restarts mpg123 without the previous frame's bit reservoir: the
first frame after each block decodes wrong (up to 0.14 of full scale against the same file read whole,
and "part2_3_length too large" on stderr), so the samples depended on the block size. ``read_on`` reads on
with libsndfile's own ``sf_readf_float``, through python-soundfile's binding, and gives the samples of a
whole read whatever the block size.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf

MPEG_FORMATS = ("MP3", "MPEG")  # libsndfile's names of MPEG audio


def read_on(handle: sf.SoundFile, frames: int, out: np.ndarray | None = None) -> np.ndarray:
    """Up to ``frames`` frames ``(n, channels)`` float32 from where the last read ended (into ``out`` if
    given), by libsndfile's own ``sf_readf_float``: no seek (see the module doc)."""
    from soundfile import _ffi, _snd  # libsndfile through python-soundfile's own binding

    if out is None:
        out = np.empty((frames, handle.channels), dtype=np.float32)
    frames = min(frames, out.shape[0])
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape[1] == handle.channels
    got = int(_snd.sf_readf_float(handle._file, _ffi.cast("float *", out.ctypes.data), frames))
    if error := int(_snd.sf_error(handle._file)):
        raise sf.LibsndfileError(error, prefix="Error reading: ")
    return out[:got]
