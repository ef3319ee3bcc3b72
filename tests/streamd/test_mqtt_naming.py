"""MQTT naming at the edges: both topic prefixes normalised alike, a node id that stays readable and stable
for any client id, and settings that cannot both hold (a blank client id, a URL path and a ``prefix`` that
disagree) refused in one line. Against a real mosquitto broker and real ``streamd`` processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.mosquitto import Broker, Subscriber
from support.process import assert_clean_error, run_streamd

from streamd.config import load_config
from streamd.config_sections import MqttSection
from streamd.errors import ConfigError
from streamd.mqtt_address import client_ids
from streamd.mqtt_discovery import node_slug, slug


def test_the_discovery_prefix_is_normalised_and_a_non_ascii_client_id_keeps_its_node_id(
    broker: Broker, tmp_path: Path, clips: list[Path], small_checkpoint: Path, free_port: int
) -> None:
    """``discovery_prefix = "/ha/"`` announces under ``ha/...`` as ``prefix = "x/"`` publishes under
    ``x/...`` (before: ``/ha//sensor/...``, which Home Assistant never sees); the client id ``Ünïcode ☃``
    keeps the node id it always had, ``n_code`` (the id of the device and of every entity's unique id)."""
    config = tmp_path / "daemon.toml"
    mqtt = 'prefix = "x/"\ndiscovery_prefix = "/ha/"\nclient_id = "Ünïcode ☃"\n'
    config.write_text(f'[events]\nallow = ["dog"]\n[mqtt]\n{mqtt}')
    sub = Subscriber(broker.port)
    try:
        result = run_streamd(
            *["replay", clips[0], "--speed", "max", "--checkpoint", small_checkpoint, "--no-dashboard"],
            *["--config", config, "--publish", f"tcp://127.0.0.1:{free_port}"],
            *["--mqtt", f"mqtt://127.0.0.1:{broker.port}"],
            timeout=120,
        )
        assert result.returncode == 0, result.describe()
        assert sub.wait_for("x/availability", b"offline")
        time.sleep(0.2)
        topics = {topic for topic, _, _ in list(sub.received)}
    finally:
        sub.close()
    stream = clips[0].stem.replace(".", "_")
    sensor = f"ha/sensor/n_code/{slug(stream)}_top_label/config"
    assert sensor in topics and f"ha/binary_sensor/n_code/{slug(stream)}_dog/config" in topics, topics
    assert not [t for t in topics if t.startswith("/") or "//" in t], topics
    payload = json.loads(next(p for t, p, _ in sub.received if t == sensor))
    assert (
        payload["device"]["identifiers"] == ["n_code"] and payload["state_topic"] == f"x/{stream}/prediction"
    )


def test_a_node_id_with_no_ascii_letter_left_is_a_stable_short_hash() -> None:
    """Not the word ``label`` (every such id was the same one before)."""
    ids = {node_slug(name) for name in ("☃", "日本語", "  ", "☃☃")}
    assert len(ids) == 4 and "label" not in ids and all(len(i) == 6 and i.isalnum() for i in ids)
    assert node_slug("☃") == node_slug("☃")
    assert client_ids(MqttSection(client_id="Ünïcode ☃")) == ("Ünïcode ☃", "n_code")
    assert client_ids(MqttSection(client_id="Crème brûlée"))[1] == "cr_me_br_l_e"  # as ever


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        ('client_id = "  "\n', "mqtt.client_id '  ' is blank: give an id, or leave the key out"),
        (
            'url = "mqtt://127.0.0.1:1883/home"\nprefix = "garden"\n',
            "mqtt.prefix 'garden' contradicts the path of mqtt.url ('home')",
        ),
    ],
)
def test_settings_that_cannot_both_hold_are_refused_naming_the_file(
    tmp_path: Path, toml: str, error: str
) -> None:
    config = tmp_path / "daemon.toml"
    config.write_text(f"[mqtt]\n{toml}")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert str(caught.value).startswith(f"{config}: {error}"), caught.value


def test_a_url_path_equal_to_the_prefix_is_no_contradiction(tmp_path: Path) -> None:
    config = tmp_path / "daemon.toml"
    config.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1883/home/"\nprefix = "/home"\n')
    assert load_config(config).mqtt.prefix == "/home"
    config.write_text('[mqtt]\nclient_id = ""\n')  # empty: the default, as documented
    assert load_config(config).mqtt.client_id == ""
    # the default prefix spelled out, as the sample config does: the URL's path stays the prefix
    config.write_text('[mqtt]\nurl = "mqtt://127.0.0.1:1883/home"\nprefix = "streamd"\n')
    assert load_config(config).mqtt.prefix == "streamd"


def test_stream_and_label_ids_keep_the_rule_existing_sensors_were_named_by() -> None:
    """Home Assistant entities and state topics of streams and labels are named by ``slug``: a name that
    loses letters there keeps the id it always had; the node id too, but for one with nothing left."""
    assert slug("Küche") == "k_che" and slug("犬") == "label" and slug("Crying baby") == "crying_baby"
    assert node_slug("Küche") == "k_che" and node_slug("犬") != "label" and node_slug("label") == "label"


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        ('client_id = " "\n', "mqtt.client_id ' ' is blank"),
        ('url = "mqtt://127.0.0.1:1/a"\nprefix = "b"\n', "mqtt.prefix 'b' contradicts the path of mqtt.url"),
        ('url = "mqtt://127.0.0.1:1"\ndiscovery_prefix = "/"\n', "mqtt.discovery_prefix: empty"),
    ],
)
def test_the_daemon_refuses_them_in_one_line(
    tmp_path: Path, clips: list[Path], small_checkpoint: Path, free_port: int, toml: str, error: str
) -> None:
    config = tmp_path / "daemon.toml"
    config.write_text(f"[mqtt]\n{toml}")
    result = run_streamd(
        *["replay", clips[0], "--checkpoint", small_checkpoint, "--no-dashboard", "--check"],
        *["--config", config, "--publish", f"tcp://127.0.0.1:{free_port}"],
        timeout=120,
    )
    line = assert_clean_error(result, exit_code=2)
    assert line.startswith(f"streamd: error: {config}: {error}"), line
