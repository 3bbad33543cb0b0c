"""moto's server on 127.0.0.1, with each request applied atomically.

moto's in-memory backends check a condition and then write without a lock, so two threads of its
threaded server can both pass the same ``ConditionExpression`` - something DynamoDB never allows. Real
DynamoDB applies each conditional write and each transaction atomically; we reproduce that by serialising
requests through one lock (connections stay concurrent). Without this, a concurrency test of the budget
buckets would be measuring moto's race, not ours.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server


class AtomicRequests:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self.lock:
            return list(self.app(environ, start_response))


def serve(host: str = "127.0.0.1", port: int = 4566) -> BaseWSGIServer:
    """Start the emulator on a daemon thread; ``server.port`` tells where it listens."""
    app = AtomicRequests(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, name="aws-emulator", daemon=True).start()
    return server
