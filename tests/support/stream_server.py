"""A live audio server for the network-source tests, run as its own process (so a test can kill it).

``python stream_server.py http PORT FILE``: HTTP, each GET gets FILE's bytes paced to real time
(after a burst of ``BURST_S``).
``python stream_server.py tcp PORT FILE``: MPEG-TS (MP2 audio) written with PyAV to each client of a
listening TCP socket, in real time, FILE looped. Prints ``ready`` once listening (HTTP) or started (TCP).
``python stream_server.py tslossy PORT FILE [LOSE_S]``: FILE as MPEG-TS (MP2 audio) over plain TCP in real
time, with the TS packets of LOSE_S (default 1) s lost in transit at 3 s and the 8 after them damaged (as
a camera's network loses and garbles them).
"""

from __future__ import annotations

import contextlib
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import soundfile as sf

CHUNK_S = 0.05
BURST_S = 2.0  # sent at once on connect, as live servers do (FFmpeg's WAV reader looks that far ahead)


def serve_http(port: int, path: Path) -> None:
    body = path.read_bytes()
    rate = sf.info(str(path)).samplerate
    bytes_per_s = rate * 2  # 16-bit mono WAV (the header goes out with the first chunk)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            step = int(bytes_per_s * CHUNK_S)
            started = time.monotonic()
            for i, pos in enumerate(range(0, len(body), step)):
                delay = started + i * CHUNK_S - BURST_S - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    self.wfile.write(body[pos : pos + step])
                except OSError:
                    return

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


def serve_tcp(port: int, path: Path) -> None:
    import av

    audio, rate = sf.read(str(path), dtype="int16", always_2d=True)
    mono = audio[:, 0]
    print("ready", flush=True)
    while True:
        try:
            out = av.open(f"tcp://127.0.0.1:{port}?listen=1", "w", format="mpegts")
        except OSError:
            time.sleep(0.05)
            continue
        try:
            stream = out.add_stream("mp2", rate=rate, layout="mono")
            n = 1152
            written = 0
            started = time.monotonic()
            while True:
                pos = written % (len(mono) - n)
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(mono[pos : pos + n][None, :]), format="s16", layout="mono"
                )
                frame.sample_rate = rate
                frame.pts = written
                for packet in stream.encode(frame):
                    out.mux(packet)
                written += n
                delay = started + written / rate - time.monotonic() - 0.2  # a little ahead
                if delay > 0:
                    time.sleep(delay)
        except (OSError, av.error.FFmpegError):
            pass
        finally:
            with contextlib.suppress(OSError, av.error.FFmpegError):
                out.close()


def serve_lossy_ts(port: int, path: Path, lose_at_s: float = 3.0, lose_s: float = 1.0) -> None:
    import io
    import socket

    import av

    audio, rate = sf.read(str(path), dtype="int16", always_2d=True)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as out:
        stream = out.add_stream("mp2", rate=rate, layout="mono")
        for pos in range(0, len(audio) - 1152, 1152):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(audio[pos : pos + 1152, 0][None, :]), format="s16", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, pos
            for packet in stream.encode(frame):
                out.mux(packet)
    data = buffer.getvalue()
    per_s = len(data) / (len(audio) / rate)
    server = socket.create_server(("127.0.0.1", port))
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        started, sent, lost = time.monotonic(), 0, False
        step = 188 * 20
        with contextlib.suppress(OSError):
            while sent < len(data):
                if not lost and sent >= lose_at_s * per_s:
                    lost = True
                    sent += int(lose_s * per_s) // 188 * 188
                    for packet in range(sent, sent + 188 * 8, 188):  # then damaged payloads: undecodable
                        client.sendall(data[packet : packet + 4] + bytes(range(7, 191)))
                    sent += 188 * 8
                client.sendall(data[sent : sent + step])
                sent += step
                delay = started + sent / per_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        client.close()


if __name__ == "__main__":
    mode, port_text, file_text = sys.argv[1:4]
    if mode == "tslossy":
        serve_lossy_ts(
            int(port_text), Path(file_text), lose_s=float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
        )
    else:
        (serve_http if mode == "http" else serve_tcp)(int(port_text), Path(file_text))
