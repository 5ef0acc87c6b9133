"""The sandbox's owed webhook callbacks: dropped for an app that stopped, so a new app that
listens on the same address later never gets them."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from clinic_bot.sandbox.gateway import _Callbacks


class _Receiver(BaseHTTPRequestHandler):
    def log_message(self, *_args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.got.append(body["messages"][0]["id"])
        self.server.arrived.set()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def message(mid: str) -> dict:
    return {"messages": [{"id": mid, "chat_id": "4915111110001@s.whatsapp.net"}]}


def test_forgotten_callbacks_are_dropped_and_new_ones_still_delivered():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.got, server.arrived = [], threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/webhooks/whapi"
    callbacks = _Callbacks()
    try:
        callbacks.put(url, "secret", message("owed-to-the-old-app"), delay=0.3)
        callbacks.forget(url)  # the old app stopped before its callback was due
        callbacks.put(url, "secret", message("for-the-new-app"))
        # Same chat, same lane, in order: once the second arrives, the first was dropped.
        assert server.arrived.wait(10)
        assert server.got == ["for-the-new-app"]
    finally:
        server.shutdown()
        server.server_close()
