"""Run the server in a background thread of this process (tests, notebooks, an eval next to a training run)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI


@contextmanager
def serve_in_background(app: FastAPI, host: str = "127.0.0.1", start_timeout_s: float = 20.0) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free port of ``host`` (loopback by default); yields the base URL (no /v1).

    The server stops, and its thread is joined, when the block ends. Raises RuntimeError when it does not start
    within ``start_timeout_s``.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
