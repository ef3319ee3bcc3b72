"""Prometheus endpoint: a real HTTP scrape during a replay shows exactly the status counters."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pipeline_helpers import Pipeline
from pipeline_helpers import scrape_metrics as _scrape

from streamd.config import DaemonConfig
from streamd.errors import ConfigError
from streamd.file_source import FileSource
from streamd.metrics import COUNTERS, GAUGES, check_metrics_exposure, parse_listen
from streamd.model_loading import load_model


def test_scrapes_during_a_replay_equal_the_status_counters(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path
) -> None:
    audio = np.concatenate([sf.read(str(p), dtype="float32")[0] for p in clips])
    path = tmp_path / "three.flac"
    sf.write(path, audio, 16000)
    cfg = DaemonConfig()
    cfg.publish.status_interval_s = 0.2
    cfg.events.allow = ["dog"]
    cfg.events.threshold = 0.0
    cfg.events.min_hits = 1
    cfg.metrics.listen = "127.0.0.1:0"
    cfg.clips.dir = str(tmp_path / "clips")  # its counters join the status and the scrape
    model = load_model(small_checkpoint, compute="cpu")
    source = FileSource(path, speed=4.0)
    pipe = Pipeline(cfg, [source], model)
    port = pipe.integrations.metrics.port
    scrapes = []
    done = threading.Event()

    def scrape_loop() -> None:
        while not done.is_set():
            scrapes.append(_scrape(port))
            time.sleep(0.15)

    scraper = threading.Thread(target=scrape_loop)
    scraper.start()
    try:
        pipe.daemon.run_until_done()
    finally:
        done.set()
        scraper.join(10)
    final = _scrape(port)
    pipe.integrations.close()
    with pytest.raises(OSError):
        _scrape(port)

    stream = pipe.daemon.streams[0].name
    label = (("stream", stream),)
    statuses = pipe.of("status")
    checked = 0
    for scrape in [*scrapes, final]:
        key = ("streamd_status_t_end_seconds", label)
        if key not in scrape:
            continue
        same_time = [m for m in statuses if m["t_end"] == scrape[key]]
        assert same_time, "a scrape shows a status message that was never published"

        def matches(msg: dict, scrape: dict = scrape) -> bool:
            counters = msg["counters"]
            return all(
                scrape.get((f"{name}_total", label)) == counters.get(k) for k, (name, _) in COUNTERS.items()
            ) and all(scrape[(name, label)] == counters[k] for k, (name, _) in GAUGES.items())

        assert any(matches(m) for m in same_time)
        checked += 1
    assert checked >= 5, f"only {checked} scrapes had counters"
    last = statuses[-1]
    assert last["state"] == "finished"
    assert final[("streamd_windows_total", label)] == last["counters"]["windows"] > 0
    clip_counters = ("clips_saved", "clip_write_errors", "clips_dropped_speech", "clips_unchecked")
    assert all(final[(f"{COUNTERS[k][0]}_total", label)] == last["counters"][k] for k in clip_counters)
    assert ("streamd_mqtt_delivered_total", label) not in final  # MQTT is off: no such series
    assert final[("streamd_device_state", (("state", "finished"), ("stream", stream)))] == 1.0
    predictions = pipe.of("prediction")
    assert final[("streamd_window_to_publish_seconds_count", label)] == len(predictions)
    assert final[("streamd_model_seconds_count", ())] == last["counters"]["batches"]
    assert final[("streamd_published_total", ())] == last["counters"]["published"]  # daemon-wide: no stream
    assert ("streamd_published_total", label) not in final
    starts = [e for e in pipe.of("event") if e["state"] == "start"]
    assert final[("streamd_events_total", (("label", "dog"), ("stream", stream)))] == len(starts) == 1
    assert final[("streamd_level_dbfs", label)] == predictions[-1]["level_dbfs"]


def test_listen_addresses() -> None:
    assert parse_listen("9109") == ("127.0.0.1", 9109)
    assert parse_listen("0.0.0.0:9109") == ("0.0.0.0", 9109)
    assert parse_listen("[::1]:9109") == ("::1", 9109)
    for bad in ("x", "host:", ":9109", "1.2.3.4:70000", "[::1", "::1:9109", "[]:9109"):
        with pytest.raises(ConfigError):
            parse_listen(bad)
    for local in ("9109", "127.0.0.1:9109", "[::1]:9109", "localhost:9109"):
        check_metrics_exposure(local, insecure=False)
    for wide in ("0.0.0.0:9109", "[::]:9109", "192.168.1.5:9109", "myhost:9109"):
        with pytest.raises(ConfigError, match=r"without authentication.*--insecure"):
            check_metrics_exposure(wide, insecure=False)
        check_metrics_exposure(wide, insecure=True)  # the user's explicit choice


def test_a_wide_metrics_address_in_a_config_file_is_named_as_its_setting(tmp_path: Path, capsys) -> None:
    """It was blamed on --metrics, an option the user never gave."""
    from streamd.cli import main

    config = tmp_path / "m.toml"
    config.write_text('[metrics]\nlisten = "0.0.0.0:9111"\n')
    assert main(["replay", "x.wav", "--config", str(config), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"streamd: error: {config}: metrics.listen 0.0.0.0:9111: refusing to serve"), err
    assert main(["replay", "x.wav", "--metrics", "0.0.0.0:9111", "--check"]) == 2
    assert capsys.readouterr().err.startswith("streamd: error: --metrics 0.0.0.0:9111: refusing to serve")


@pytest.mark.parametrize("n", [1, 2, 7, 4096])
def test_status_percentiles_equal_numpys_linear_percentile(n):
    from streamd.status import percentile

    values = np.random.default_rng(n).exponential(40.0, size=n).tolist()
    for q in (0, 1, 50, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12, abs=1e-12)
    assert percentile([], 99) == 0.0
