"""A proxy in front of the real Cube.js server — a legitimate fake: a real Cube cannot be made to send
its answer one byte every few seconds, nor to answer values it never computes (``sNaN``, ``1_000``, a
time dimension of ``not-a-date``). Every request goes to the real Cube; ``/v1/load`` answers are then
changed as the proxy's settings say (they may be changed while it runs):

- ``trickle``: seconds between single bytes of the answer's body, after its headers (``None``: at once);
  the proxy stops after ``trickle_for`` seconds and closes the connection mid-body;
- ``values``: ``{member: text}`` — each row's value of the member is replaced by the text (a measure's
  number, a time dimension's timestamp); ``rows``: when set, the answer's rows are cut to that many.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


@dataclass
class ProxySettings:
    trickle: float | None = None
    trickle_for: float = 15.0
    values: dict[str, str] = field(default_factory=dict)
    rows: int | None = None
    loads: int = 0


def _rewrite(body: bytes, settings: ProxySettings) -> bytes:
    answer = json.loads(body)
    for result in answer.get("results") or [answer]:  # a multi-query answer holds one per query
        data = result.get("data")
        if not isinstance(data, list):
            continue
        if settings.rows is not None:
            del data[settings.rows :]
        for row in data:
            for member, text in settings.values.items():
                for key in [k for k in row if k == member or k.startswith(member + ".")]:
                    row[key] = text
    return json.dumps(answer).encode()


@contextmanager
def cube_proxy(cube_url: str) -> Iterator[tuple[str, ProxySettings]]:
    """``(proxy URL, its settings)``: the proxy runs until the block ends."""
    settings = ProxySettings()
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def _forward(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            sent = self.rfile.read(length) if length else None
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() in ("authorization", "content-type", "x-request-id")
            }
            upstream = requests.request(method, cube_url + self.path, data=sent, headers=headers, timeout=60)
            body = upstream.content
            if "/v1/load" in self.path and upstream.status_code == 200:
                settings.loads += 1
                if (settings.values or settings.rows is not None) and b'"Continue wait"' not in body:
                    body = _rewrite(body, settings)
            self.send_response(upstream.status_code)
            self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if settings.trickle is None or "/v1/load" not in self.path:
                self.wfile.write(body)
                return
            self.wfile.flush()
            started = time.monotonic()
            for byte in body:  # the fault itself: one byte, then a pause
                if stop.is_set() or time.monotonic() - started > settings.trickle_for:
                    return  # hang up mid-body
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                stop.wait(settings.trickle)

        def do_GET(self) -> None:
            self._forward("GET")

        def do_POST(self) -> None:
            self._forward("POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", settings
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
