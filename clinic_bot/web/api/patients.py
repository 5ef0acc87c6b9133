"""Patients: GET a patient's state; staff replies and resolving a handoff to reception."""

from __future__ import annotations

from sqlalchemy import select

from clinic_bot.core.clock import iso_z
from clinic_bot.core.runtime import get_runtime
from clinic_bot.domain.phones import InvalidPhone, normalize_phone
from clinic_bot.models import Patient
from clinic_bot.reactions.conversation import handoff
from clinic_bot.web.api.base import Blueprint
from clinic_bot.web.api.errors import fail
from clinic_bot.web.api.schemas import (
    PHONE_EXAMPLE,
    PHONE_PATTERN,
    ErrorSchema,
    HandoffReplySchema,
    PatientSchema,
    StaffMessageReplySchema,
    StaffMessageSchema,
)

blp = Blueprint("api_patients", __name__, description="A patient's state; reception's replies")

PHONE_PARAMETER = {
    "in": "path",
    "name": "phone",
    "required": True,
    "schema": {"type": "string", "pattern": PHONE_PATTERN, "example": PHONE_EXAMPLE},
    "description": "+4915112345678, 4915112345678 or 4915112345678@s.whatsapp.net",
}
_BAD_PHONE = "not a phone number"


def patient_json(p: Patient) -> dict:
    """The API's view of a patient (intake answers are for staff, shown here too)."""
    return {
        "phone": p.phone,
        "name": p.name,
        "push_name": p.push_name,
        "language": p.language,
        "opted_out": p.opted_out,
        "opted_out_at": iso_z(p.opted_out_at),
        "opt_out_message_id": p.opt_out_message_id,
        "state": p.state,
        "handoff": p.handoff_since is not None,
        "intake": p.intake or {},
    }


def _patient(session, phone: str) -> Patient:
    """The patient for a path phone; 400 for no phone number, 404 for an unknown one."""
    try:
        digits = normalize_phone(phone)
    except InvalidPhone as exc:
        fail(400, "invalid_phone", str(exc))
    p = session.execute(select(Patient).where(Patient.phone == digits)).scalar_one_or_none()
    if p is None:
        fail(404, "not_found", f"no patient with phone {digits}")
    return p


@blp.route("/patients/<phone>", methods=["GET"], parameters=[PHONE_PARAMETER])
@blp.response(200, PatientSchema, description="the patient")
@blp.alt_response(400, schema=ErrorSchema, description=_BAD_PHONE)
@blp.alt_response(404, schema=ErrorSchema, description="no such patient")
def get_patient(phone: str):
    """A patient by phone (any CONTRACT §7 form)"""
    runtime = get_runtime()
    with runtime.db.ReadSession() as s:
        return patient_json(_patient(s, phone))


@blp.route("/patients/<phone>/messages", methods=["POST"], parameters=[PHONE_PARAMETER])
@blp.arguments(
    StaffMessageSchema, example={"text": "Hi Ana, Maria from reception here. Which day suits you?"}
)
@blp.response(202, StaffMessageReplySchema, description="queued for sending")
@blp.alt_response(404, schema=ErrorSchema, description="no such patient")
@blp.alt_response(409, schema=ErrorSchema, description="the patient has opted out")
def post_staff_message(data, phone: str):
    """Reception writes to the patient

    The chat stays with reception (the bot is silent) until the handoff is resolved.
    """
    runtime = get_runtime()
    now = runtime.clock()
    with runtime.db.transaction() as s:
        p = _patient(s, phone)
        if p.opted_out:
            fail(409, "opted_out", "the patient has opted out of messages")
        handoff.staff_message(s, runtime.profile, p, data["text"].strip(), now)
        result = patient_json(p)
    runtime.waker.wake()
    return {"queued": True, "patient": result}


@blp.route("/patients/<phone>/handoff/resolve", methods=["POST"], parameters=[PHONE_PARAMETER])
@blp.response(200, HandoffReplySchema, description="resolved is false when there was no handoff")
@blp.alt_response(400, schema=ErrorSchema, description=_BAD_PHONE)
@blp.alt_response(404, schema=ErrorSchema, description="no such patient")
def resolve_handoff(phone: str):
    """Hand the chat back to the bot (the patient is told)"""
    runtime = get_runtime()
    with runtime.db.transaction() as s:
        p = _patient(s, phone)
        resolved = handoff.resolve(s, runtime.profile, p, runtime.clock())
        result = patient_json(p)
    return {"resolved": resolved, "patient": result}
