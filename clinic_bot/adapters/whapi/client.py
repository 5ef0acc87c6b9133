"""HTTP client for Whapi's REST API: one requests.Session, timeouts, classified results."""

from __future__ import annotations

import json
from dataclasses import dataclass

import requests

# Connect quickly or give up; Whapi "sends immediately", so a long read means trouble.
DEFAULT_TIMEOUT = (3.05, 15)
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class SendResult:
    """What came of one send: ok with the provider id, or an error and whether to retry."""

    ok: bool
    status_code: int | None = None
    message_id: str | None = None
    retryable: bool = False
    uncertain: bool = False  # the gateway may have sent it (timeout, 2xx without an id)
    error: str | None = None
    # Set when the channel itself cannot send: "unauthorized" (401, the phone is logged out)
    # or "not_found" (404 "Channel not found", a wrong token). The message is not at fault.
    channel: str | None = None


class WhapiClient:
    """Talks to Whapi (or the sandbox, which answers the same way)."""

    def __init__(self, base_url: str, token: str | None, timeout=DEFAULT_TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def send(self, endpoint: str, body: dict) -> SendResult:
        """POST one message; never raises for network or gateway errors."""
        url = f"{self.base_url}/{endpoint.lstrip('/')}"
        try:
            resp = self.session.post(url, json=body, timeout=self.timeout)
        except requests.Timeout as exc:
            return SendResult(False, retryable=True, uncertain=True, error=f"timeout: {exc}")
        except requests.RequestException as exc:
            return SendResult(False, retryable=True, error=f"connection error: {exc}")
        return classify_response(resp.status_code, resp.content)

    def health(self) -> tuple[str, str]:
        """The channel's state from GET /health: ("AUTH", "") when it can send, else why not."""
        try:
            resp = self.get("health", wakeup="true", channel_type="web")
        except requests.RequestException as exc:
            return "UNREACHABLE", f"connection error: {type(exc).__name__}"
        if resp.status_code == 404:
            return "NOT_FOUND", _error_text(404, resp.content)
        if resp.status_code == 401:
            return "UNAUTHORIZED", _error_text(401, resp.content)
        if resp.status_code != 200:
            return "UNREACHABLE", _error_text(resp.status_code, resp.content)
        try:
            data = resp.json()
        except ValueError:
            return "UNREACHABLE", "GET /health answered without JSON"
        status = data.get("status") if isinstance(data, dict) else None
        text = status.get("text") if isinstance(status, dict) else None
        return (text if isinstance(text, str) and text else "UNKNOWN"), ""

    def list_messages(self, chat_id: str, time_from: int, count: int = 100) -> list[dict] | None:
        """Messages the channel holds for one chat since `time_from` (seconds); None on error.

        GET /messages/list/{ChatID} is how a send whose answer was lost is settled: it lists
        what the channel actually sent.
        """
        try:
            resp = self.get(
                f"messages/list/{chat_id}",
                time_from=int(time_from),
                count=count,
                from_me="true",
                sort="desc",
            )
        except requests.RequestException:
            return None
        if resp.status_code != 200:
            return None
        try:
            data = resp.json()
        except ValueError:
            return None
        messages = data.get("messages") if isinstance(data, dict) else None
        return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else None

    def get(self, path: str, **params) -> requests.Response:
        return self.session.get(
            f"{self.base_url}/{path.lstrip('/')}", params=params, timeout=self.timeout
        )

    def patch(self, path: str, body: dict) -> requests.Response:
        return self.session.patch(
            f"{self.base_url}/{path.lstrip('/')}", json=body, timeout=self.timeout
        )


def _error_text(status: int, raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return f"HTTP {status}: {raw[:500].decode(errors='replace')}"
    # Keep Whapi's whole error body (code, message, details, href): staff read it on dead letters.
    return f"HTTP {status}: {json.dumps(data, ensure_ascii=False)[:1000]}"


def _error_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:500].decode(errors="replace")
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else ""


def channel_problem(status: int, raw: bytes) -> str | None:
    """ "unauthorized" or "not_found" when an error answer is about the channel, not the message.

    401 "Need channel authorization" means the phone is logged out: every send would fail the
    same way until it is paired again. 404 "Channel not found" is a wrong token or channel;
    other 404s ("Media with specified id not found") are the message's own fault.
    """
    message = _error_message(raw).lower()
    if status == 401 or ("channel" in message and "authoriz" in message):
        return "unauthorized"
    if status == 404 and "channel" in message:
        return "not_found"
    return None


def classify_response(status: int, raw: bytes) -> SendResult:
    """Turn a gateway answer into a SendResult (2xx with an id; retryable 5xx/429; final 4xx)."""
    if 200 <= status < 300:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        message = data.get("message") if isinstance(data, dict) else None
        mid = message.get("id") if isinstance(message, dict) else None
        if isinstance(mid, str) and mid and data.get("sent", True) is not False:
            return SendResult(True, status, message_id=mid)
        return SendResult(
            False,
            status,
            retryable=True,
            uncertain=True,
            error=f"HTTP {status} without a message id",
        )
    channel = channel_problem(status, raw)
    return SendResult(
        False,
        status,
        retryable=status in RETRYABLE_STATUS or channel is not None,
        error=_error_text(status, raw),
        channel=channel,
    )
