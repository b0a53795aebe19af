"""Serve a sandbox app on 127.0.0.1 in a background thread (werkzeug, threaded)."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from connectors.sandbox.app import SandboxApp

HOST = "127.0.0.1"


class _QuietHandler(WSGIRequestHandler):
    """Request lines would drown the user's output; the sandbox's own stats record them."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log(self, type: str, message: str, *args: Any) -> None:
        if type == "error":
            logging.getLogger("crmsync.sandbox").debug(message, *args)


class SandboxServer:
    def __init__(self, app: SandboxApp, port: int = 0) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(HOST, port, app, threaded=True, request_handler=_QuietHandler)
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox-{app.type}", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> SandboxServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.app.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
