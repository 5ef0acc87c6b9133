"""A fake Whapi gateway for the benchmark: answers sends like Whapi and records arrival times.

Besides the sends it answers the two reads the relay makes: `GET /health` (the channel is
AUTH) and `GET /messages/list/{ChatID}` (what was sent to a chat, for settling an uncertain
send), so a benchmark run never stalls on a read that a real channel would answer.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEND_PATHS = ("/messages/text", "/messages/interactive")


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, like the real gateway: the app's relay reuses one requests.Session.
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:  # the bench prints its own numbers
        pass

    def _answer(self, status: int, payload: dict) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        return body if isinstance(body, dict) else {}

    def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
        """Record a send and answer it like Whapi's SentMessage."""
        arrived = time.perf_counter()
        body = self._body()
        path = self.path.split("?", 1)[0]
        gateway: FakeGateway = self.server.gateway  # type: ignore[attr-defined]
        mid = gateway.record(arrived, path, str(body.get("to", "")))
        message = {"id": mid, "from_me": True, "status": "pending", "chat_id": body.get("to")}
        message["timestamp"] = int(time.time())
        if isinstance(body.get("body"), str):
            message.update(type="text", text={"body": body["body"]})
        gateway.remember(message)
        self._answer(200, {"sent": True, "message": message})

    def do_PUT(self) -> None:  # noqa: N802
        """Mark-as-read, reactions, presences: accepted and ignored."""
        self._body()
        self._answer(200, {"success": True})

    do_PATCH = do_PUT  # noqa: N815

    def do_GET(self) -> None:  # noqa: N802
        """`/health` says AUTH; `/messages/list/{chat}` lists what was sent there; else {}."""
        path = self.path.split("?", 1)[0]
        gateway: FakeGateway = self.server.gateway  # type: ignore[attr-defined]
        if path == "/health":
            self._answer(200, {"status": {"code": 4, "text": "AUTH"}})
        elif path.startswith("/messages/list/"):
            listed = gateway.sent_to(path.removeprefix("/messages/list/"))
            self._answer(200, {"messages": listed, "count": len(listed), "total": len(listed)})
        else:
            self._answer(200, {})


class FakeGateway:
    """A threaded HTTP server on 127.0.0.1; `first_arrival` maps (path, to) to the first send."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.sends: list[tuple[float, str, str]] = []
        self.first_arrival: dict[tuple[str, str], float] = {}
        self._sent_by_chat: dict[str, list[dict]] = {}
        server = ThreadingHTTPServer.__new__(ThreadingHTTPServer)
        # The thread-per-webhook baseline opens hundreds of connections at once: a deep backlog
        # keeps the kernel from dropping SYNs (which would add 1 s retransmits to its numbers).
        server.request_queue_size = 1024
        ThreadingHTTPServer.__init__(server, ("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.gateway = self
        self.server = server
        self.port = server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=server.serve_forever, name="fake-gateway")
        self._thread.daemon = True

    def start(self) -> FakeGateway:
        """Serve on a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        """Forget every recorded send (between two systems under test)."""
        with self._lock:
            self.sends.clear()
            self.first_arrival.clear()
            self._sent_by_chat.clear()

    def record(self, arrived: float, path: str, to: str) -> str:
        """Remember one send; returns the provider message id to answer with."""
        with self._lock:
            n = next(self._ids)
            self.sends.append((arrived, path, to))
            self.first_arrival.setdefault((path, to), arrived)
        return f"bench-{n:08d}-wOTwl0rVw"

    def remember(self, message: dict) -> None:
        """Keep a sent message for `GET /messages/list` of its chat."""
        with self._lock:
            self._sent_by_chat.setdefault(str(message.get("chat_id")), []).append(message)

    def sent_to(self, chat_id: str) -> list[dict]:
        """What was sent to one chat, newest first (Whapi's `sort=desc`)."""
        with self._lock:
            return list(reversed(self._sent_by_chat.get(chat_id, [])))

    def answered(self, path: str, chats: list[str]) -> dict[str, float]:
        """The first arrival time at `path` for each of `chats` that has one."""
        with self._lock:
            return {
                c: self.first_arrival[(path, c)] for c in chats if (path, c) in self.first_arrival
            }

    def count_answered(self, path: str, prefix: str) -> int:
        """How many distinct chats starting with `prefix` have had a send at `path`."""
        with self._lock:
            return sum(1 for p, to in self.first_arrival if p == path and to.startswith(prefix))

    def total_sends(self) -> int:
        """Every send recorded so far."""
        with self._lock:
            return len(self.sends)
