"""A capture target for replay tests: a real HTTP server on loopback that records every request it reads (method,
path with query, headers, body) and answers what the test sets, per request, after recording it: so it can
play a flow that took the lead and then a gateway that timed out (504), or a redirect."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = tuple[int, dict[str, str], bytes]
TAKEN: Answer = (201, {"Content-Type": "application/json"}, b'{"outcome":"success","lead":{"id":"x"},"price":0}')


class CaptureServer:
    """Serves on ``host`` (any loopback address); ``answer(captured)`` decides each answer (default: 201)."""

    def __init__(self, host: str = "127.0.0.1", answer: Callable[[Captured], Answer] | None = None) -> None:
        self.requests: list[Captured] = []
        self.answer = answer or (lambda captured: TAKEN)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                captured = Captured(self.command, self.path, dict(self.headers.items()), body)
                server.requests.append(captured)
                status, headers, content = server.answer(captured)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CaptureServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
