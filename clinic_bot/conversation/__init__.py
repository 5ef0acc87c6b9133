"""The per-patient conversation: what the bot answers to a patient's message or tap."""

from __future__ import annotations

from .. import events as ev
from ..whapi.bodies import Button

MENU_BOOK = "menu:book"
MENU_APPOINTMENTS = "menu:appointments"
MENU_RECEPTION = "menu:reception"


def show_menu(ctx, patient) -> None:
    """Queue the clinic's main menu: Book / My appointments / Talk to reception."""
    p, lang = ctx.profile, patient.language
    name = patient.name or patient.push_name
    body = p.text("menu_body", lang, name_part=f" {name.split()[0]}" if name else "")
    patient.state, patient.state_data = "menu", {}
    ctx.outbox.buttons(
        patient,
        body,
        [
            Button(MENU_BOOK, p.text("menu_book", lang)),
            Button(MENU_APPOINTMENTS, p.text("menu_appointments", lang)),
            Button(MENU_RECEPTION, p.text("menu_reception", lang)),
        ],
    )


def respond(ctx, patient, event: ev.PatientMessage) -> str:
    """Answer one patient event (the booking flows build on this)."""
    show_menu(ctx, patient)
    return "menu shown"
