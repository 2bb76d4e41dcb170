"""A loopback HTTP file server for tests: serves bytes from memory on 127.0.0.1.

Each served path has its own behaviour (see :class:`ServedFile`): honour or
ignore ``Range`` requests, cut the connection after N bytes, answer an error
status for the first few requests. Every request is recorded (path and
``Range`` header) so tests can assert what the client asked for.

Usage::

    with FileServer() as server:
        url = server.add("/a.zip", data, cut_after=1000)
        ...
        assert server.requests[1].range == "bytes=1000-"
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ServedFile:
    data: bytes
    honor_range: bool = True  # False: answer 200 with the whole file even to a Range request
    cut_after: int | None = None  # send the full Content-Length, write this many body bytes, close
    cut_requests: int = 1  # how many requests (the first ones) are cut
    error_status: int | None = None  # e.g. 500: answer this instead of the file ...
    error_requests: int = 1 << 30  # ... for this many requests (the first ones)
    hits: int = 0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    range: str | None


@dataclass
class FileServer:
    files: dict[str, ServedFile] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, data: bytes, **behaviour) -> str:
        """Serve ``data`` at ``path``; return its URL."""
        self.files[path] = ServedFile(data, **behaviour)
        return self.base_url + path

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _make_handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # keep test output clean
            pass

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            hit = 0
            with server._lock:
                server.requests.append(RecordedRequest("GET", self.path, range_header))
                served = server.files.get(self.path)
                if served is not None:
                    served.hits += 1
                    hit = served.hits
            if served is None:
                self.send_error(404, "Not Found")
                return
            if served.error_status is not None and hit <= served.error_requests:
                self.send_error(served.error_status)
                return

            data, size = served.data, len(served.data)
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header or "")
            if served.honor_range and match:
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = data[start : end + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                body = data
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes" if served.honor_range else "none")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()

            if served.cut_after is not None and hit <= served.cut_requests:
                self.wfile.write(body[: served.cut_after])
                self.wfile.flush()
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self.wfile.write(body)

    return Handler


def refused_port() -> socket.socket:
    """A socket bound to a loopback port that does not listen: connecting is refused.

    Keep the returned socket open while the test runs (so no one else takes the
    port) and close it afterwards.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def silent_port() -> socket.socket:
    """A socket that listens but never accepts: connections succeed, no answer ever comes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock
