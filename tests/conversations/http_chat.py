"""A patient chatting over real HTTP: the sandbox simulator posts Whapi webhooks to the app,
the worker's two loops run by hand (inbox, then the relay to the sandbox gateway).

Same interface as `Chat`, so the scripted corpus runs through the whole transport: webhook
authentication and parsing, inbox rows, the handler, outbox rows, and the gateway's checks.
"""

from __future__ import annotations

import secrets

from clinic_bot.delivery.relay import Relay
from clinic_bot.intake.inbox_loop import drain_inbox
from clinic_bot.sandbox.gateway import CHANNEL_ID

from .chat import Chat, Sent


class HttpChat(Chat):
    """One patient's phone in the sandbox; every action is an HTTP request to the app."""

    def __init__(self, live, phone: str = "4915112345678", name: str = "Ana Test"):
        super().__init__(live.runtime, phone, name)
        self.live = live
        self.relay = Relay(live.runtime.db, live.runtime.client, live.runtime.clock)

    def close(self) -> None:
        self.relay.close()

    def flush(self) -> list[Sent]:
        """Handle every webhook that arrived and send every reply, then read what was sent."""
        drain_inbox(self.runtime, on_handled=self.relay.drain)
        self.relay.drain()
        return self.new_messages()

    def _act(self, **action) -> list[Sent]:
        answer = self.live.patient(self.phone, name=self.push_name, **action)
        assert answer["webhook_status"] == 200, answer
        return self.flush()

    def text(self, text: str) -> list[Sent]:
        return self._act(text=text)

    def media(self, media_type: str = "voice") -> list[Sent]:
        return self._act(media=media_type)

    def location(self) -> list[Sent]:
        return self._act(location={"latitude": 52.5, "longitude": 13.4})

    def other(self, message_type: str = "poll") -> list[Sent]:
        """A message kind the simulator cannot make (a poll), posted as Whapi would."""
        now = self.runtime.clock()
        message = {
            "id": f"{message_type}.{secrets.token_hex(6)}",
            "from_me": False,
            "type": message_type,
            "chat_id": f"{self.phone}@s.whatsapp.net",
            "timestamp": int(now.timestamp()),
            "source": "mobile",
            message_type: {"title": "Which day?", "options": ["Mon", "Tue"], "total": 0},
            "from": self.phone,
            "from_name": self.push_name,
        }
        payload = {
            "messages": [message],
            "event": {"type": "messages", "event": "post"},
            "channel_id": CHANNEL_ID,
        }
        assert self.live.post_webhook(payload).status_code == 200
        return self.flush()

    def tap_id(self, tap_id: str, title: str = "") -> list[Sent]:
        # `force`: a stale or forged id is sent as the phone would, offered or not.
        return self._act(button={"id": tap_id, "title": title, "force": True})

    def pick_id(self, row_id: str, title: str = "") -> list[Sent]:
        return self._act(list={"id": row_id, "title": title, "force": True})
