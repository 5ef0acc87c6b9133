"""Whapi request bodies for each kind of send, with WhatsApp's limits enforced in one place."""

from __future__ import annotations

import base64

from clinic_bot.domain.messages import (  # noqa: F401  (the limits are part of this adapter's surface)
    BUTTON_TITLE,
    FOOTER_TEXT,
    HEADER_TEXT,
    INTERACTIVE_BODY,
    LIST_LABEL,
    MAX_BUTTONS,
    MAX_LIST_ROWS,
    MAX_LIST_SECTIONS,
    ROW_DESCRIPTION,
    ROW_TITLE,
    SECTION_TITLE,
    TEXT_BODY,
    Button,
    Row,
    shorten,
)


def text_body(to: str, body: str) -> dict:
    """Body for POST /messages/text."""
    return {"to": to, "body": body[:TEXT_BODY]}


def buttons_body(to: str, body: str, buttons: list[Button], *, header: str = "", footer: str = ""):
    """Body for POST /messages/interactive with quick-reply buttons (at most 3)."""
    if not 1 <= len(buttons) <= MAX_BUTTONS:
        raise ValueError(f"WhatsApp shows 1 to {MAX_BUTTONS} buttons, not {len(buttons)}")
    out = {
        "type": "button",
        "to": to,
        "body": {"text": body[:INTERACTIVE_BODY]},
        "action": {
            "buttons": [
                {"type": "quick_reply", "title": shorten(b.title, BUTTON_TITLE), "id": b.id}
                for b in buttons
            ]
        },
    }
    if header:
        out["header"] = {"text": shorten(header, HEADER_TEXT)}
    if footer:
        out["footer"] = {"text": shorten(footer, FOOTER_TEXT)}
    return out


def list_body(
    to: str,
    body: str,
    label: str,
    sections: list[tuple[str, list[Row]]],
    *,
    header: str = "",
    footer: str = "",
) -> dict:
    """Body for POST /messages/interactive with a list (at most 10 rows in all)."""
    rows = sum(len(r) for _, r in sections)
    if not 1 <= rows <= MAX_LIST_ROWS or len(sections) > MAX_LIST_SECTIONS:
        raise ValueError(f"WhatsApp lists hold 1 to {MAX_LIST_ROWS} rows, not {rows}")
    out = {
        "type": "list",
        "to": to,
        "body": {"text": body[:INTERACTIVE_BODY]},
        "action": {
            "list": {
                "label": shorten(label, LIST_LABEL),
                "sections": [
                    {
                        "title": shorten(title, SECTION_TITLE),
                        "rows": [
                            {
                                "id": r.id,
                                "title": shorten(r.title, ROW_TITLE),
                                **(
                                    {"description": shorten(r.description, ROW_DESCRIPTION)}
                                    if r.description
                                    else {}
                                ),
                            }
                            for r in items
                        ],
                    }
                    for title, items in sections
                    if items
                ],
            }
        },
    }
    if header:
        out["header"] = {"text": shorten(header, HEADER_TEXT)}
    if footer:
        out["footer"] = {"text": shorten(footer, FOOTER_TEXT)}
    return out


def document_body(to: str, content: bytes, filename: str, mime_type: str, caption: str = ""):
    """Body for POST /messages/document with the file inline as a base64 data URI."""
    data = base64.b64encode(content).decode()
    out = {
        "to": to,
        "media": f"data:{mime_type};name={filename};base64,{data}",
        "filename": filename,
        "mime_type": mime_type,
    }
    if caption:
        out["caption"] = caption[:INTERACTIVE_BODY]
    return out


def visible_text(endpoint: str, body: dict) -> str:
    """The text a patient sees for a body (used to match our own echoes back to the outbox)."""
    if endpoint == "messages/text":
        return str(body.get("body", ""))
    if endpoint == "messages/interactive":
        part = body.get("body")
        return str(part.get("text", "")) if isinstance(part, dict) else ""
    return str(body.get("caption", ""))
