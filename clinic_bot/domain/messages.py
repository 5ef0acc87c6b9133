"""What one WhatsApp message can hold: WhatsApp's limits, reply buttons and list rows.

Reactions and schedules build messages from these; `adapters.whapi.bodies` turns them into
Whapi's JSON, so no layer above the adapter needs to know Whapi's request shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_BUTTONS = 3
BUTTON_TITLE = 25
MAX_LIST_ROWS = 10
MAX_LIST_SECTIONS = 10
ROW_TITLE = 24
ROW_DESCRIPTION = 72
LIST_LABEL = 20
SECTION_TITLE = 24
INTERACTIVE_BODY = 1024
HEADER_TEXT = 60
FOOTER_TEXT = 60
TEXT_BODY = 4096


def shorten(text: str, limit: int) -> str:
    """Fit `text` in `limit` characters, cutting at a word boundary and ending with '…'."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"


@dataclass(frozen=True)
class Button:
    """A quick-reply button: the id comes back when tapped, the title is shown."""

    id: str
    title: str


@dataclass(frozen=True)
class Row:
    """One row of a list message: the id comes back when picked."""

    id: str
    title: str
    description: str = ""
