"""Registering our webhook with Whapi (PATCH /settings), keeping other webhooks intact."""

from __future__ import annotations

# Messages and statuses also arrive on `put`: what reached the phone while the channel was
# reconnecting. messages.delete carries `messages_removed` and `messages_removed_all`.
EVENTS = [
    {"type": "messages", "method": "post"},
    {"type": "messages", "method": "put"},
    {"type": "messages", "method": "delete"},
    {"type": "statuses", "method": "post"},
    {"type": "statuses", "method": "put"},
    {"type": "calls", "method": "post"},
    {"type": "channel", "method": "post"},
    {"type": "users", "method": "post"},
    {"type": "users", "method": "delete"},
    {"type": "groups", "method": "post"},
    {"type": "groups", "method": "put"},
    {"type": "labels", "method": "post"},
    {"type": "labels", "method": "delete"},
]


def register_webhook(client, public_url: str, secret: str) -> str:
    """Replace any webhook of ours with one in body mode carrying the secret header."""
    url = public_url.rstrip("/") + "/webhooks/whapi"
    current = client.get("settings")
    if current.status_code != 200:
        raise RuntimeError(f"GET /settings answered {current.status_code}: {current.text[:300]}")
    hooks = [h for h in (current.json().get("webhooks") or []) if h.get("url") != url]
    hooks.append(
        {
            "url": url,
            "mode": "body",
            "events": EVENTS,
            "headers": {"X-Webhook-Token": secret},
            "webhook_max_age_seconds": 3600,
        }
    )
    body = {"webhooks": hooks, "callback_persist": True, "callback_backoff_delay_ms": 3000}
    resp = client.patch("settings", body)
    if resp.status_code != 200:
        raise RuntimeError(f"PATCH /settings answered {resp.status_code}: {resp.text[:300]}")
    return url
