"""A fake OpenAI-compatible endpoint for the eval tests: a real HTTP server on loopback (`http.server` in a thread)
whose every chat request is answered by the test's ``behave(handler, n)`` (``n``: the request's index)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def head(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """The status line and headers (JSON content type unless ``headers`` says otherwise); no body."""
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()

    def send(self, status: int, payload: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> None:
        """A whole answer: ``payload`` (JSON-encoded unless bytes) with its Content-Length."""
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.head(status, {"Content-Length": str(len(data)), **(headers or {})})
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            n, self.server.count = self.server.count, self.server.count + 1
        self.server.behave(self, n)


Behave = Callable[[Handler, int], None]


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # (over a hundred clients connect at once)

    def __init__(self, behave: Behave) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.behave, self.lock, self.count = behave, threading.Lock(), 0

    def handle_error(self, request: Any, client_address: Any) -> None:  # a client that hung up is expected here
        pass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def fake_endpoint(behave: Behave) -> Iterator[FakeServer]:
    """The started server; shut down and closed on exit."""
    server = FakeServer(behave)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
