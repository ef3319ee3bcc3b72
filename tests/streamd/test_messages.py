"""Message builders, the JSON codec and the shipped JSON Schema agree with each other and refuse bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from zmq_helpers import esc50_categories, validate

from streamd import messages


@pytest.fixture(scope="module")
def labels() -> list[str]:
    return esc50_categories()


def _scores(labels: list[str], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random(len(labels)).astype(np.float32)


def test_prediction_is_schema_valid_and_best_first(labels: list[str]) -> None:
    scores = _scores(labels, 0)
    pairs = list(zip(labels[:5], scores[:5], strict=True))  # deliberately not sorted
    msg = messages.prediction(
        "mic", 3.0, 8.0, "ast-esc50", pairs, np.float64(12.5), level_dbfs=-23.5, window_index=np.int64(3)
    )
    validate(msg)
    assert msg["schema"] == messages.SCHEMA_VERSION == "streamd/1"
    assert (msg["type"], msg["stream"], msg["t_start"], msg["t_end"]) == ("prediction", "mic", 3.0, 8.0)
    got = [(item["label"], item["score"]) for item in msg["labels"]]
    assert got == sorted(((name, float(score)) for name, score in pairs), key=lambda p: -p[1])
    assert msg["level_dbfs"] == -23.5 and msg["window_index"] == 3
    assert type(msg["window_index"]) is int and type(msg["latency_ms"]) is float
    json.dumps(msg, allow_nan=False)  # numpy scalars were turned into plain numbers


def test_stream_times_carry_no_float_noise_and_stay_within_a_sample() -> None:
    noisy = 0.1 + 0.2  # 0.30000000000000004
    msg = messages.event("mic", "dog", "end", noisy, 33.895250000000004, 0.9)
    assert (msg["t_start"], msg["t_end"]) == (0.3, 33.89525)
    assert json.dumps(msg["t_end"]) == "33.89525"
    for rate in (8000, 22050, 44100, 48000, 96000):
        for sample in (1, 12345, 10**9 + 7):  # up to months of audio
            exact = sample / rate
            got = messages.status("mic", 0.0, exact, messages.empty_counters(), "running")["t_end"]
            assert abs(got - exact) < 0.5 / rate


def test_event_and_status_are_schema_valid() -> None:
    start = messages.event("mic", "dog", "start", 4.0, 9.0, 0.91, wall_time=1_700_000_000.0)
    validate(start)
    assert start["wall_time"] == 1_700_000_000.0 and start["peak_score"] == 0.91
    numpy_counts = {"samples": np.int64(160000), "rtf": np.float32(31.5), "gpu_ms": 2.5}
    counters = messages.empty_counters() | numpy_counts
    msg = messages.status("mic", 0.0, 10.0, counters, "running", message="ok")
    validate(msg)
    assert msg["counters"]["samples"] == 160000 and msg["counters"]["rtf"] == 31.5
    assert msg["counters"]["gpu_ms"] == 2.5 and msg["message"] == "ok"


def test_silence_level_is_floored_and_nan_refused() -> None:
    msg = messages.prediction("mic", 0, 5, "m", [("dog", 0.5)], 1.0, level_dbfs=float("-inf"))
    assert msg["level_dbfs"] == messages.LEVEL_FLOOR_DBFS
    validate(msg)
    with pytest.raises(ValueError, match="level_dbfs"):
        messages.prediction("mic", 0, 5, "m", [("dog", 0.5)], 1.0, level_dbfs=float("nan"))


ZERO = messages.empty_counters()


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: messages.prediction("mic", 5, 4, "m", [("dog", 0.5)], 1.0), "before t_start"),
        (lambda: messages.prediction("mic", -1, 4, "m", [("dog", 0.5)], 1.0), "t_start"),
        (lambda: messages.prediction("mic", 0, 5, "m", [], 1.0), "at least one label"),
        (lambda: messages.prediction("mic", 0, 5, "m", [("dog", float("nan"))], 1.0), "finite"),
        (lambda: messages.prediction("mic", 0, 5, "", [("dog", 0.5)], 1.0), "model"),
        (lambda: messages.prediction("my mic", 0, 5, "m", [("dog", 0.5)], 1.0), "stream name"),
        (lambda: messages.prediction("a.b", 0, 5, "m", [("dog", 0.5)], 1.0), "stream name"),
        (lambda: messages.event("mic", "dog", "middle", 0, 5, 0.5), "state"),
        (lambda: messages.status("mic", 0, 5, {"samples": 1}, "running"), "missing: windows"),
        (lambda: messages.status("mic", 0, 5, messages.empty_counters(), "sleeping"), "unknown status"),
        (lambda: messages.status("mic", 0, 5, ZERO | {"windows": -1}, "running"), ">= 0"),
        (lambda: messages.status("mic", 0, 5, ZERO | {"windows": True}, "running"), "integer"),
        (lambda: messages.topic("mic", "alert"), "unknown message type"),
    ],
)
def test_builders_refuse_bad_values(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_stream_name_makes_any_text_valid() -> None:
    for text in ["USB Audio Device: hw(1,0)", "long.take2.wav", "  ", "ñandú", "x" * 200]:
        name = messages.stream_name(text)
        assert messages.check_stream(name) == name
    assert messages.stream_name("USB Audio: hw(1,0)") == "USB_Audio_hw_1_0"
    assert messages.stream_name("mic") == "mic"
    assert messages.stream_name("Café Mic (USB)") == "Cafe_Mic_USB"  # accents keep their letter
    assert messages.stream_name("ñandú") == "nandu" and messages.stream_name("狗") == "stream"


def test_encode_decode_round_trip(labels: list[str]) -> None:
    pairs = list(zip(labels, _scores(labels, 1), strict=True))
    msg = messages.prediction("file-1", 1.0, 6.0, "m", pairs, 3.0)
    frames = messages.encode(msg)
    assert frames[0] == b"streamd.file-1.prediction"
    assert messages.decode(frames) == msg
    assert messages.topic("file-1", "event") == "streamd.file-1.event"


def _padded(total_bytes: int) -> dict:
    msg = messages.event("mic", "dog", "end", 0, 5, 0.5, wall_time=1.0)
    msg["pad"] = ""
    base = len(messages.encode(msg)[1])
    msg["pad"] = "x" * (total_bytes - base)
    return msg


def test_size_bound_is_exact() -> None:
    at_limit = _padded(messages.MAX_MESSAGE_BYTES)
    frames = messages.encode(at_limit)
    assert len(frames[1]) == messages.MAX_MESSAGE_BYTES
    assert messages.decode(frames)["pad"] == at_limit["pad"]
    with pytest.raises(ValueError, match="exceeds"):
        messages.encode(_padded(messages.MAX_MESSAGE_BYTES + 1))
    with pytest.raises(ValueError, match="exceeds"):
        messages.decode([frames[0], frames[1] + b" "])


def test_encode_refuses_what_json_cannot_carry() -> None:
    msg = messages.event("mic", "dog", "end", 0, 5, 0.5)
    with pytest.raises(ValueError, match="plain JSON"):
        messages.encode(msg | {"peak_score": float("inf")})
    with pytest.raises(ValueError, match="plain JSON"):
        messages.encode(msg | {"extra": object()})


GOOD = messages.encode(messages.event("mic", "dog", "start", 0, 5, 0.5, wall_time=1.0))


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        ([GOOD[1]], "expected 2 frames"),
        ([GOOD[0], GOOD[1], b""], "expected 2 frames"),
        ([GOOD[0], b"\xff\xfe"], "not valid JSON"),
        ([GOOD[0], b"{not json"], "not valid JSON"),
        ([GOOD[0], b"[1, 2]"], "not a JSON object"),
        ([GOOD[0], GOOD[1].replace(b"0.5", b"NaN")], "non-finite"),
        ([GOOD[0], b"[" * 50000 + b"]" * 50000], "not valid JSON|exceeds"),
        ([GOOD[0], GOOD[1].replace(b"streamd/1", b"streamd/0")], "unsupported message schema"),
        ([b"streamd.other.event", GOOD[1]], "does not match"),
        ([b"streamd.mic.status", GOOD[1]], "does not match"),
        ([b"x" * 300, GOOD[1]], "topic of 300 bytes"),
        ([GOOD[0], b"\x80\x04\x95pickle"], "not valid JSON"),
    ],
)
def test_decode_refuses_malformed_frames(frames: list[bytes], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        messages.decode(frames)


def test_decode_depth_bomb_within_size_is_refused() -> None:
    body = b"[" * 30000 + b"]" * 30000  # under the size bound, deeper than the parser allows
    assert len(body) <= messages.MAX_MESSAGE_BYTES
    with pytest.raises(ValueError):
        messages.decode([GOOD[0], body])


def test_schema_file_agrees_with_the_module() -> None:
    schema = messages.load_schema()
    assert schema["properties"]["schema"]["const"] == messages.SCHEMA_VERSION
    assert tuple(schema["properties"]["type"]["enum"]) == messages.MESSAGE_TYPES
    status = schema["$defs"]["status"]["properties"]
    assert tuple(status["counters"]["required"]) == messages.STATUS_COUNTERS
    assert tuple(status["state"]["enum"]) == messages.STATUS_STATES
    assert tuple(schema["$defs"]["event"]["properties"]["state"]["enum"]) == messages.EVENT_STATES
    assert schema["$defs"]["prediction"]["properties"]["level_dbfs"]["minimum"] == messages.LEVEL_FLOOR_DBFS


def _prediction() -> dict:
    return messages.prediction("mic", 0, 5, "m", [("dog", 0.9), ("rain", 0.1)], 4.0, wall_time=1.0)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda m: m.pop("wall_time"), "'wall_time' is a required property"),
        (lambda m: m.pop("latency_ms"), "'latency_ms' is a required property"),
        (lambda m: m.update(extra=1), "Additional properties"),
        (lambda m: m.update(t_start=-1.0), "less than the minimum"),
        (lambda m: m.update(stream="my mic"), "does not match"),
        (lambda m: m.update(labels=[{"label": "dog"}]), "'score' is a required property"),
        (lambda m: m.update(labels=[]), "should be non-empty"),
        (lambda m: m.update(type="status"), "'counters' is a required property"),
        (lambda m: m.update(schema="streamd/2"), "was expected"),
    ],
)
def test_schema_rejects_broken_bodies(mutate, match: str) -> None:
    msg = _prediction()
    validate(msg)
    mutate(msg)
    with pytest.raises(AssertionError, match=match):
        validate(msg)


def test_schema_rejects_bad_status_counters() -> None:
    msg = messages.status("mic", 0, 5, messages.empty_counters(), "running", wall_time=1.0)
    validate(msg)
    for name, bad in [("windows", 1.5), ("overruns", True), ("published", -1), ("Bad-Name", 1)]:
        broken = json.loads(json.dumps(msg))
        broken["counters"][name] = bad
        with pytest.raises(AssertionError, match="counters"):
            validate(broken)
    broken = json.loads(json.dumps(msg))
    del broken["counters"]["restarts"]
    with pytest.raises(AssertionError, match="'restarts' is a required property"):
        validate(broken)
