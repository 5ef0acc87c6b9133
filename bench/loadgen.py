"""A small asyncio HTTP/1.1 client for bursts and paced sends (wrk covers the steady load)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass


def envelope(message_id: str, phone: str, text: str, timestamp: int) -> bytes:
    """A realistic Whapi inbound text webhook body (reference/whapi.md 1.2)."""
    body = {
        "messages": [
            {
                "id": message_id,
                "from_me": False,
                "type": "text",
                "chat_id": f"{phone}@s.whatsapp.net",
                "timestamp": timestamp,
                "source": "mobile",
                "text": {"body": text},
                "from": phone,
                "from_name": f"Patient {phone[-4:]}",
            }
        ],
        "event": {"type": "messages", "event": "post"},
        "channel_id": "BENCH-01",
    }
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class Sent:
    """One POST: when it started (before connecting), when the answer ended, its status."""

    key: str
    started: float
    ended: float
    status: int


async def _post(host: str, port: int, path: str, body: bytes, headers: dict, key: str) -> Sent:
    started = time.perf_counter()
    status = 0
    try:
        reader, writer = await asyncio.open_connection(host, port)
        head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head += [
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        raw = await reader.read()  # the server closes after its answer (Connection: close)
        writer.close()
        parts = raw.split(b" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    except OSError:
        status = 0
    return Sent(key, started, time.perf_counter(), status)


async def _burst(host, port, path, items, headers, concurrency):
    gate = asyncio.Semaphore(concurrency)

    async def one(key, body):
        async with gate:
            return await _post(host, port, path, body, headers, key)

    return await asyncio.gather(*(one(k, b) for k, b in items))


def burst(
    host: str, port: int, path: str, items: list[tuple[str, bytes]], headers: dict, concurrency=32
) -> list[Sent]:
    """POST every (key, body) as fast as `concurrency` connections allow."""
    return asyncio.run(_burst(host, port, path, items, headers, concurrency))


async def _paced(host, port, path, items, headers, rate):
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05
    tasks = []
    for i, (key, body) in enumerate(items):
        # Open loop: send on schedule whether or not earlier answers have come back.
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_post(host, port, path, body, headers, key)))
    return await asyncio.gather(*tasks)


def paced(
    host: str, port: int, path: str, items: list[tuple[str, bytes]], headers: dict, rate: float
) -> list[Sent]:
    """POST the items at a fixed rate per second (open loop); returns every send."""
    return asyncio.run(_paced(host, port, path, items, headers, rate))
