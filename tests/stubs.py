"""A local HTTP server for the endpoint tests: 127.0.0.1 only, a free port, always shut down."""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextlib.contextmanager
def local_server(handler: type[BaseHTTPRequestHandler], **attributes):
    """Serve `handler` on 127.0.0.1; `attributes` are set on the server (handlers read them via `self.server`).

    The server gets `url` and a `stopping` event, set on exit before the shutdown so slow handlers can give up.
    """
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads, httpd.stopping = True, threading.Event()
    for name, value in attributes.items():
        setattr(httpd, name, value)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
