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
    return SendResult(
        False, status, retryable=status in RETRYABLE_STATUS, error=_error_text(status, raw)
    )
