"""Recorded provider responses (``tests/fixtures/providers``) served to the adapters.

httpx adapters get them through ``httpx.MockTransport`` with the body as a byte iterator in small pieces, so
SSE events straddle reads as they do on a real connection. Bedrock gets them from a real HTTP server on
127.0.0.1 (:class:`LocalServer`): botocore signs, sends, parses JSON errors and decodes the event stream itself.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from finops.local.eventstream import encode_message

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "providers"
HOP_BY_HOP = {"content-length", "transfer-encoding", "connection"}


@dataclass(frozen=True)
class Recorded:
    """One recorded HTTP response: status, headers (framing headers dropped), body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


def recorded(provider: str, name: str) -> Recorded:
    """``<provider>/<name>.http``: a status line, headers, a blank line, the body exactly as sent."""
    raw = (FIXTURES / provider / f"{name}.http").read_bytes()
    head, _, body = raw.partition(b"\n\n")
    status_line, *header_lines = head.decode().split("\n")
    headers = []
    for line in header_lines:
        key, _, value = line.partition(":")
        if key.lower() not in HOP_BY_HOP:
            headers.append((key.strip(), value.strip()))
    return Recorded(int(status_line.split()[1]), headers, body)


def pieces(body: bytes, size: int = 7) -> list[bytes]:
    return [body[i:i + size] for i in range(0, len(body), size)]


@dataclass
class Upstream:
    """A MockTransport handler: serves queued responses, records requests and how much body was read."""

    responses: list[Any] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    pieces_read: int = 0

    def serve(self, rec: Recorded, *, cut_at: int | None = None, drop: bool = False) -> Upstream:
        """Queue ``rec``; ``cut_at`` ends the body after that many bytes: cleanly, or with the error httpx
        raises when the peer drops the connection (``drop``)."""
        self.responses.append((rec, cut_at, drop))
        return self

    def json_body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def body_iter(self, body: bytes, cut_at: int | None, drop: bool, request: httpx.Request) -> Iterator[bytes]:
        for piece in pieces(body if cut_at is None else body[:cut_at]):
            self.pieces_read += 1
            yield piece
        if drop:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body (incomplete chunked read)",
                request=request)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        rec, cut_at, drop = self.responses.pop(0)
        return httpx.Response(rec.status, headers=rec.headers, content=self.body_iter(rec.body, cut_at, drop, request))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


# --- Bedrock: a real HTTP server on 127.0.0.1 ---------------------------------------------------------------


def recorded_events(name: str) -> dict[str, Any]:
    """``bedrock/<name>.events.json``: status, headers and the event-stream messages (headers + JSON payload)."""
    return json.loads((FIXTURES / "bedrock" / f"{name}.events.json").read_text())


def encode_events(events: list[dict[str, Any]]) -> list[bytes]:
    return [encode_message(e["headers"], json.dumps(e["payload"], separators=(",", ":")).encode()) for e in events]


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    frames: list[bytes]  # body pieces, each sent as one HTTP chunk (chunked) or all at once (not chunked)
    chunked: bool = False
    pause_before: dict[int, float] = field(default_factory=dict)  # frame index -> seconds to sleep first
    drop_after: int | None = None  # close the socket after this many frames, without ending the body
    hold_before: int | None = None  # wait for ``release`` (at most 5 s) before sending this frame
    release: threading.Event = field(default_factory=threading.Event)
    frames_sent: int = 0


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class LocalServer:
    """A threaded HTTP server that replays queued :class:`Reply` objects and records what it received."""

    def __init__(self) -> None:
        self.replies: queue.Queue[Reply] = queue.Queue()
        self.seen: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.seen.append(Seen(self.path, dict(self.headers.items()), body))
                server.reply(self, server.replies.get_nowait())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def queue(self, reply: Reply) -> None:
        self.replies.put(reply)

    def queue_http(self, rec: Recorded) -> None:
        self.queue(Reply(rec.status, rec.headers, [rec.body]))

    def queue_events(self, name: str, **kw: Any) -> Reply:
        recording = recorded_events(name)
        headers = [(k, v) for k, v in recording["headers"].items() if k.lower() not in HOP_BY_HOP]
        reply = Reply(recording["status"], headers, encode_events(recording["events"]), chunked=True, **kw)
        self.queue(reply)
        return reply

    @classmethod
    def reply(cls, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        try:
            cls._write(handler, reply)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test): expected
            handler.close_connection = True

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        handler.send_response(reply.status)
        for key, value in reply.headers:
            handler.send_header(key, value)
        if reply.chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        else:
            handler.send_header("Content-Length", str(sum(len(f) for f in reply.frames)))
        handler.end_headers()
        for index, frame in enumerate(reply.frames):
            if reply.drop_after is not None and index >= reply.drop_after:
                handler.wfile.flush()
                handler.close_connection = True
                return
            if index in reply.pause_before:
                handler.wfile.flush()
                time.sleep(reply.pause_before[index])
            if index == reply.hold_before:
                handler.wfile.flush()
                reply.release.wait(5)
            # Counted before the write: once the client holds a frame, the count includes it (counting after
            # the write raced the client, which could read the frame before the count moved).
            reply.frames_sent += 1
            if reply.chunked:
                handler.wfile.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
            else:
                handler.wfile.write(frame)
            handler.wfile.flush()
        if reply.chunked:
            handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def first_then_rest(stream: Iterator[Any], check: Callable[[], None]) -> list[Any]:
    """Take one item, run ``check`` (e.g. nothing else was read yet), then drain."""
    first = next(stream)
    check()
    return [first, *stream]
