"""A stand-in for the ECS task metadata endpoint v4 on loopback: JSON documents by path, 404 otherwise."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any


@contextmanager
def serve_metadata(documents: dict[str, Any]) -> Iterator[str]:
    """Serve ``documents`` (path -> JSON body); yields ``http://127.0.0.1:<port>/v4/abc``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path in documents
            body = json.dumps(documents.get(self.path, {})).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v4/abc"
    finally:
        server.shutdown()
        server.server_close()
