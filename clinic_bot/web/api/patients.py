"""Patients: GET a patient's state; staff replies and resolving a handoff to reception."""

from __future__ import annotations

from flask import jsonify, request
from sqlalchemy import select

from clinic_bot.core.clock import iso_z
from clinic_bot.core.runtime import get_runtime
from clinic_bot.domain.messages import TEXT_BODY
from clinic_bot.domain.phones import InvalidPhone, normalize_phone
from clinic_bot.models import Patient
from clinic_bot.reactions.conversation import handoff
from clinic_bot.web.api.auth import api_error
from clinic_bot.web.api.blueprint import bp
from clinic_bot.web.api.openapi import document, error_response


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


@bp.get("/patients/<phone>")
def get_patient(phone: str):
    """A patient by phone (any CONTRACT §7 form)."""
    try:
        digits = normalize_phone(phone)
    except InvalidPhone as exc:
        return api_error(400, "invalid_phone", str(exc))
    runtime = get_runtime()
    with runtime.db.ReadSession() as s:
        p = s.execute(select(Patient).where(Patient.phone == digits)).scalar_one_or_none()
        if p is None:
            return api_error(404, "not_found", f"no patient with phone {digits}")
        return jsonify(patient_json(p))


def _patient_or_error(session, phone: str):
    """The patient for a path phone, or the API error to return."""
    try:
        digits = normalize_phone(phone)
    except InvalidPhone as exc:
        return None, api_error(400, "invalid_phone", str(exc))
    p = session.execute(select(Patient).where(Patient.phone == digits)).scalar_one_or_none()
    if p is None:
        return None, api_error(404, "not_found", f"no patient with phone {digits}")
    return p, None


@bp.post("/patients/<phone>/messages")
def post_staff_message(phone: str):
    """Staff write to a patient: {"text"}; the chat stays with reception until resolved."""
    body = request.get_json(silent=True)
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        return api_error(400, "invalid_body", 'send {"text": "..."} with a non-empty text')
    if len(text) > TEXT_BODY:
        return api_error(400, "invalid_body", f"text is longer than {TEXT_BODY} characters")
    runtime = get_runtime()
    now = runtime.clock()
    with runtime.db.transaction() as s:
        p, error = _patient_or_error(s, phone)
        if error:
            return error
        if p.opted_out:
            return api_error(409, "opted_out", "the patient has opted out of messages")
        handoff.staff_message(s, runtime.profile, p, text.strip(), now)
        result = patient_json(p)
    runtime.waker.wake()
    return jsonify(queued=True, patient=result), 202


@bp.post("/patients/<phone>/handoff/resolve")
def resolve_handoff(phone: str):
    """Staff hand the chat back to the bot; the patient is told."""
    runtime = get_runtime()
    with runtime.db.transaction() as s:
        p, error = _patient_or_error(s, phone)
        if error:
            return error
        resolved = handoff.resolve(s, runtime.profile, p, runtime.clock())
        result = patient_json(p)
    return jsonify(resolved=resolved, patient=result), 200


_PHONE = [
    {
        "in": "path",
        "name": "phone",
        "required": True,
        "schema": {"type": "string"},
        "description": "+4915112345678, 4915112345678 or 4915112345678@s.whatsapp.net",
    }
]
_PATIENT_REPLY = {
    "type": "object",
    "properties": {"patient": {"type": "object"}},
}
document(
    "/patients/{phone}/messages",
    {
        "post": {
            "summary": "Reception writes to the patient; the bot stays silent until resolved",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["text"],
                            "properties": {"text": {"type": "string", "maxLength": TEXT_BODY}},
                        }
                    }
                },
            },
            "responses": {
                "202": {
                    "description": "queued for sending",
                    "content": {"application/json": {"schema": _PATIENT_REPLY}},
                },
                "400": error_response("invalid phone or empty text"),
                "401": error_response("missing or unknown token"),
                "404": error_response("no such patient"),
                "409": error_response("the patient has opted out"),
            },
        }
    },
    parameters=_PHONE,
)
document(
    "/patients/{phone}/handoff/resolve",
    {
        "post": {
            "summary": "Hand the chat back to the bot (the patient is told)",
            "responses": {
                "200": {
                    "description": "resolved is false when there was no handoff",
                    "content": {"application/json": {"schema": _PATIENT_REPLY}},
                },
                "400": error_response("invalid phone"),
                "401": error_response("missing or unknown token"),
                "404": error_response("no such patient"),
            },
        }
    },
    parameters=_PHONE,
)
