"""The MQTT sink's queue: oldest dropped when full, a taken message returned to the front, counts kept."""

from __future__ import annotations

from streamd.handled_queue import wait_until_handled
from streamd.mqtt_delivery import FrontQueue


def test_full_queue_drops_its_oldest_and_marks_them_done() -> None:
    q = FrontQueue(maxsize=2)
    assert q.put_newest("a") == [] and q.put_newest("b") == []
    assert q.put_newest("c") == ["a"]
    assert q.drain() == ["b", "c"]
    assert wait_until_handled(q, 0.0)  # nothing left unfinished


def test_a_message_taken_and_put_back_goes_first_and_stays_unfinished() -> None:
    q = FrontQueue(maxsize=3)
    for item in ("a", "b"):
        q.put_newest(item)
    taken = q.get()
    assert q.put_back(taken)
    assert not wait_until_handled(q, 0.0)  # two unfinished: "a" (back) and "b"
    assert q.get() == "a" and q.get() == "b"
    q.task_done()
    q.task_done()
    assert wait_until_handled(q, 0.0)


def test_put_back_refuses_when_the_queue_filled_meanwhile() -> None:
    q = FrontQueue(maxsize=2)
    q.put_newest("a")
    taken = q.get()
    q.put_newest("b")
    q.put_newest("c")
    assert not q.put_back(taken)  # the oldest, the one to drop
    assert q.drain() == ["b", "c"]
    q.task_done()  # the caller counts "a" as lost and marks it done
    assert wait_until_handled(q, 0.0)
