"""A local stand-in for the webhook function's Lambda Function URL: a tiny HTTP listener on 127.0.0.1.

The real Label Studio server (localrun.labelstudio) posts its webhooks here. The listener answers at once and keeps
each request as the event a Function URL would hand the function (``headers``, ``body``, ``queryStringParameters``,
``rawQueryString``, ``requestContext.http``); the harness then delivers them to the real ``ls_webhook`` handler when
the test or the demo says so (:meth:`WorkflowHarness.deliver_webhooks`), so what happens, and in which order, never
depends on threads. Label Studio waits at most ``WEBHOOK_TIMEOUT`` (1 s) for an answer, which this always meets.
"""

from __future__ import annotations

import queue
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class WebhookRelay:
    """Receives webhooks on ``url`` and queues them as Function URL events (:meth:`take` returns them)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self.received = 0
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", errors="replace")
                parsed = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parsed.query))
                relay._queue.put({
                    "version": "2.0", "rawPath": parsed.path, "rawQueryString": parsed.query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "queryStringParameters": query or None, "body": body, "isBase64Encoded": False,
                    "requestContext": {"http": {"method": "POST", "path": parsed.path, "sourceIp": "127.0.0.1"}},
                })
                relay.received += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"queued": true}')

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                return None

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-relay", daemon=True)

    @property
    def url(self) -> str:
        """What the webhook function's URL stands for here (trailing slash, as a Function URL has)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def take(self) -> list[dict[str, Any]]:
        """Every event received so far (the queue is emptied)."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def start(self) -> WebhookRelay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookRelay:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
