"""Misbehaving HTTP servers on a raw socket, for what a real LeadConduit (or anything answering at its URL) may
do: answer junk, hang, trickle its headers a byte at a time, fail with 500, send a gzip body that is not gzip,
or JSON nested a thousand levels deep. Each answers every connection the same way until closed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Handler = Callable[[socket.socket, bytes, threading.Event], None]
"""Answers one connection: the socket, the request it sent (its head at least), a flag set when the server stops."""


def answer(status: str, body: bytes, *, headers: str = "Content-Type: application/json\r\n") -> Handler:
    def handle(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        head = f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode() + body)

    return handle


def events_page(body: bytes) -> Handler:
    """``GET /events`` answering ``body`` as its first page (no ``after_id``) and ``[]`` after it; any other
    request (``GET /events/{id}``) gets ``body`` too."""

    def handle(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        line = request.split(b"\r\n", 1)[0]
        answer("200 OK", b"[]" if b"after_id=" in line else body)(conn, request, stop)

    return handle


def in_turn(*statuses: int, then: int = 200) -> tuple[Handler, list[bytes]]:
    """Answers ``statuses`` one request at a time, then ``then`` for ever (a JSON ``[]`` body each time); also the
    list of requests seen, in order, to count the attempts."""
    seen: list[bytes] = []
    lock = threading.Lock()

    def handle(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
        with lock:
            status = statuses[len(seen)] if len(seen) < len(statuses) else then
            seen.append(request)
        answer(f"{status} Status {status}", b"[]")(conn, request, stop)

    return handle, seen


def junk(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
    conn.sendall(b"\x00\xffthis is not HTTP\r\n\r\n")


def hang(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
    stop.wait(30)


def trickle_headers(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
    """The status line and headers one byte every 0.2 s: no single read ever waits long."""
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"x" * 10_000:
        if stop.is_set():
            return
        conn.sendall(bytes([byte]))
        time.sleep(0.2)


def trickle_body(conn: socket.socket, request: bytes, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[")
    while not stop.is_set():
        conn.sendall(b" ")
        time.sleep(0.2)


def gzip_junk() -> Handler:
    return answer("200 OK", b"\x1f\x8b\x08\x00junk that is not deflate", headers="Content-Encoding: gzip\r\n")


def deep_json(levels: int = 3000) -> Handler:
    return answer("200 OK", b"[" * levels + b"]" * levels)


@contextmanager
def serving(handler: Handler) -> Iterator[str]:
    """A server on a free loopback port answering with ``handler``; yields its base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            request = conn.recv(65536)
            handler(conn, request, stop)
        except OSError:
            pass
        finally:
            conn.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


def closed_port() -> str:
    """A loopback URL nothing listens on (bound and released, so the port is free)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"
