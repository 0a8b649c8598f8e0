"""An HTTP forwarder between a firehose child process and the local stack's S3 and Azure servers, so that a
test can stop the child at an exact storage request (the property test's ``kill -9`` step).

Requests whose path starts with ``/devstoreaccount1`` go to Azurite, the others to SeaweedFS, byte for byte
(signatures hold: S3's covers the Host header, which is forwarded as the client sent it, and Azure's does not
cover the host). Before each request is forwarded and after its answer came back (before the client sees it),
``hook`` is called with ``"before"`` or ``"after"``; it may kill the client, after which the request is
dropped.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SKIPPED = {"connection", "keep-alive", "proxy-connection", "expect", "transfer-encoding", "content-length"}


class StoreProxy:
    def __init__(self, s3_url: str, azure_url: str) -> None:
        self.upstreams = {"s3": urlsplit(s3_url), "az": urlsplit(azure_url)}
        self.hook: Callable[[str], bool] | None = None
        """Called before and after each request; True means the client was killed: drop the request."""
        handler = type("BoundForward", (_Forward,), {"proxy": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]  # killed clients
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _killed(self, moment: str) -> bool:
        hook = self.hook
        return hook is not None and hook(moment)


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: StoreProxy

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        assert "chunked" not in (self.headers.get("Transfer-Encoding") or ""), "chunked uploads are not forwarded"
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.proxy._killed("before"):
            self.close_connection = True
            return
        upstream = self.proxy.upstreams["az" if self.path.startswith("/devstoreaccount1") else "s3"]
        connection = http.client.HTTPConnection(upstream.hostname or "127.0.0.1", upstream.port, timeout=60)
        try:
            headers = {name: value for name, value in self.headers.items() if name.lower() not in SKIPPED}
            if body is not None:
                headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            if self.proxy._killed("after"):
                self.close_connection = True
                return
            self.send_response_only(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in SKIPPED or (name.lower() == "content-length" and self.command == "HEAD"):
                    self.send_header(name, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            connection.close()

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward
