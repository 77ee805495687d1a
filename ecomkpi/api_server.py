"""The KPI API and live page on 127.0.0.1: the deployed Lambda's routing behind a local HTTP server.

``ecomkpi up`` starts it beside the stack and ``ecomkpi serve`` starts it alone for a stack that runs
elsewhere (tables from the environment, ``AWS_ENDPOINT_URL`` for an emulator). Every request goes
through :func:`kpi_api.routes.handle`, exactly as API Gateway's requests do in AWS.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kpi_api.page import page_html
from kpi_api.reader import KpiReader
from kpi_api.routes import handle, server_error


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], reader: KpiReader, bucket: str | None) -> None:
        super().__init__(address, _Handler)
        self.reader, self.bucket = reader, bucket
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}/"

    def start(self) -> ApiServer:
        self.thread = threading.Thread(target=self.serve_forever, name="kpi-api", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that closes a polling connection is not an error worth a traceback."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer

    def _answer(self, method: str) -> None:
        parts = urlsplit(self.path)
        try:
            response = handle(
                method,
                parts.path,
                parse_qs(parts.query, keep_blank_values=True),
                self.server.reader,
                bucket=self.server.bucket,
                page=page_html,
            )
        except Exception as exc:  # a DynamoDB outage: a 500 with the reason, as the Lambda would
            response = server_error(exc)
        body = response.body.encode("utf-8")
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_HEAD(self) -> None:
        self._answer("HEAD")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the page polls every few seconds; request lines would drown the pipeline's output


def serve(
    reader: KpiReader, *, host: str = "127.0.0.1", port: int = 0, bucket: str | None = None
) -> ApiServer:
    """Start the server in a daemon thread and return it (``port=0``: any free port)."""
    return ApiServer((host, port), reader, bucket).start()
