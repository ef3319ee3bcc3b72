"""Start-up objects are kept out of later garbage collections (``streamd.start_up_gc``)."""

from __future__ import annotations

import gc

from streamd.start_up_gc import freeze_start_up_objects


def test_freeze_moves_the_live_objects_out_of_the_collected_generations():
    gc.unfreeze()
    kept = [object() for _ in range(10)] + [[i] for i in range(1000)]
    try:
        freeze_start_up_objects()
        assert gc.get_freeze_count() >= len(kept)
        assert not any(o is kept[-1] for o in gc.get_objects())  # no longer tracked by a generation
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
