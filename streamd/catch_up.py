"""How many pending columns of one stream a recurrent model takes in one call (catch-up depth).

A recurrent model that has ``forward_chunk`` runs a stream's pending 160-ms columns in one chunked call
with the carried state (``streamd.engine``). The deeper the chunk, the less per-call overhead per column
(measured on 2 cores: 8 columns per call ~5 ms per column, 64 columns ~1.8 ms; a 10-minute replay at
``--speed max`` ran at 367-383x real time with 64 columns per call, 422-437x with 128 and 469-491x with 256).
Replay (the ``block`` policy) therefore lets a stream queue and take ``REPLAY_CATCH_UP_COLUMNS`` (41 s of
audio) at once; live capture keeps the shallower ``catch_up_queue_factor``, so a stall is not followed by
a long backlog.
At ``--speed max`` the engine also waits briefly for a deep chunk to gather (``catch_up_fill_s``), since
otherwise it takes the few columns the features have just made and runs many shallow calls.
"""

from __future__ import annotations

from streamd.engine import catch_up_queue_factor
from streamd.model_loading import LoadedModel

REPLAY_CATCH_UP_COLUMNS = 256

# How long the engine of an unpaced replay waits at most, once a column is queued, for the rest of a deep
# chunk (``JobQueue.get_batch``): one chunk of 64 columns measured a quarter of the cost per column of
# chunks of 3. The features of 256 columns (41 s of audio) take tens of milliseconds, so a call often
# starts before its chunk is full; the 256-column figures above were measured with this wait.
CATCH_UP_FILL_S = 0.05


def catch_up_columns(loaded: LoadedModel, max_batch: int, queue_size_setting: int, policy: str) -> int:
    """Columns per stream the engine's queue holds and one model call takes (1: no catch-up); an
    explicit queue size (``queue_size_setting`` > 0) is kept as it is."""
    live_depth = catch_up_queue_factor(loaded, max_batch, queue_size_setting)
    if live_depth == 1 or policy != "block":
        return live_depth
    return max(live_depth, REPLAY_CATCH_UP_COLUMNS)


def catch_up_fill_s(columns: int, paced: bool) -> float:
    """The engine's fill wait: only when it catches up (``columns`` > 1) on audio that arrives flat out
    (``--speed max``); a paced or live column goes to the model as soon as it is there."""
    return CATCH_UP_FILL_S if columns > 1 and not paced else 0.0
