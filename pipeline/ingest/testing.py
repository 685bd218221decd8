"""Testing kit for ingest: a tiny threaded HTTP server on 127.0.0.1 port 0.

Routes map a path to a handler ``(request) -> Response``; every request is
recorded (path and headers) so a test can assert what the crawler asked for.

>>> with FixtureServer({"/feed.xml": lambda req: Response(200, b"<rss/>")}) as server:
...     url = server.url("/feed.xml")
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    path: str
    headers: dict[str, str]


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (timeouts).
    delay_seconds: float = 0.0


Handler = Callable[[Request], Response]


class FixtureServer:
    def __init__(self, routes: dict[str, Handler]) -> None:
        self.routes = routes
        self.requests: list[Request] = []
        self._stop = threading.Event()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                request = Request(self.path, {k.lower(): v for k, v in self.headers.items()})
                server.requests.append(request)
                handler = server.routes.get(self.path.split("?")[0])
                response = handler(request) if handler else Response(404, b"not found")
                if response.delay_seconds and server._stop.wait(response.delay_seconds):
                    return
                try:
                    self.send_response(response.status)
                    for key, value in response.headers.items():
                        self.send_header(key, value)
                    if isinstance(response.body, bytes | bytearray):
                        self.send_header("Content-Length", str(len(response.body)))
                        self.end_headers()
                        self.wfile.write(response.body)
                    else:  # streamed until the client hangs up (HTTP/1.0, no length)
                        self.end_headers()
                        for chunk in response.body:
                            self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def __enter__(self) -> FixtureServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
