"""A real mosquitto broker on 127.0.0.1 (its own config file, a free port) and a paho subscriber."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from support.fixtures import free_tcp_port
from support.net import wait_for_sockets


class Broker:
    """``mosquitto -c CONF`` on 127.0.0.1:``port``; ``stop`` and ``start`` again keep the port."""

    def __init__(self, directory: Path, users: dict[str, str] | None = None) -> None:
        """``users`` (name: password): only they may connect; None lets anyone in."""
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        self.exe = exe
        self.port = free_tcp_port()
        self.conf = directory / "mosquitto.conf"
        access = "allow_anonymous true\n"
        if users is not None:
            passwords = directory / "passwords"
            passwords.write_text("")
            for name, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), name, password], check=True)
            # run as root, mosquitto switches to its own user, which cannot read a test's private folder
            access = f"allow_anonymous false\npassword_file {passwords}\nuser root\n"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\n{access}persistence false\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if not wait_for_sockets(self.port, "listen", 1, 10.0):
            self.stop()
            raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Subscriber:
    """A paho client subscribed to ``#``: every (topic, payload, retain) it received, in order."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.received: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}")
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the test subscriber did not subscribe"

    def _on_message(self, client: object, userdata: object, msg: object) -> None:
        with self._lock:
            self.received.append((msg.topic, bytes(msg.payload), bool(msg.retain)))  # type: ignore[attr-defined]

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload, _ in self.received if t == topic]

    def wait_for(self, topic: str, payload: bytes | None = None, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.on(topic)
            if got and (payload is None or payload in got):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
