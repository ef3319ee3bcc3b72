"""Waiting, bounded, for a queue's consumer to have handled everything put on it so far."""

from __future__ import annotations

import queue
import time


def wait_until_handled(q: queue.Queue, timeout: float) -> bool:
    """``q.join()`` bounded by ``timeout``: True once every item put has been marked done."""
    deadline = time.monotonic() + max(0.0, timeout)
    with q.all_tasks_done:
        while q.unfinished_tasks:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            q.all_tasks_done.wait(left)
    return True
