"""GET /api/v1/patients/<phone>: a patient's opt-out and conversation state."""

from __future__ import annotations

from flask import current_app, jsonify
from sqlalchemy import select

from ..models import Patient
from ..phones import InvalidPhone, normalize_phone
from . import bp
from .auth import api_error


def patient_json(p: Patient) -> dict:
    """The API's view of a patient (intake answers are for staff, shown here too)."""
    return {
        "phone": p.phone,
        "name": p.name,
        "push_name": p.push_name,
        "language": p.language,
        "opted_out": p.opted_out,
        "opted_out_at": p.opted_out_at.isoformat().replace("+00:00", "Z")
        if p.opted_out_at
        else None,
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
    runtime = current_app.extensions["clinic_bot"]
    with runtime.db.Session() as s:
        p = s.execute(select(Patient).where(Patient.phone == digits)).scalar_one_or_none()
        if p is None:
            return api_error(404, "not_found", f"no patient with phone {digits}")
        return jsonify(patient_json(p))
