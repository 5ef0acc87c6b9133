"""Load the clinic profile: TOML → schema validation → Profile, or one error naming the key."""

from __future__ import annotations

import difflib
import tomllib
from functools import cache
from pathlib import Path

from marshmallow import Schema, ValidationError

from clinic_bot.domain.profile.model import IntakeQuestion, Practitioner, Profile, Service
from clinic_bot.domain.profile.schema import OPTIONAL_TABLES, ProfileSchema
from clinic_bot.settings import EXAMPLE_PROFILE

UNKNOWN = "Unknown field."


class ProfileError(ValueError):
    """A clinic profile that does not validate; the message names the key."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"clinic profile: {key}: {problem}")
        self.key = key
        self.problem = problem


@cache
def shipped_texts() -> dict[str, dict[str, str]]:
    """The texts shipped with the package: every key a clinic may set, and their defaults."""
    with EXAMPLE_PROFILE.open("rb") as fh:
        return tomllib.load(fh).get("texts", {})


def _flatten(messages, path: tuple = ()) -> list[tuple[tuple, str]]:
    """marshmallow's nested error dict as (path, message) pairs, in the schema's order."""
    if isinstance(messages, dict):
        out = []
        for key, value in messages.items():
            out += _flatten(value, path if key == "_schema" else (*path, key))
        return out
    if isinstance(messages, list):
        return [(path, str(m)) for m in messages if not isinstance(m, dict | list)] + [
            pair for m in messages if isinstance(m, dict | list) for pair in _flatten(m, path)
        ]
    return [(path, str(messages))]


def _dotted(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _schema_at(schema: Schema, path: tuple) -> Schema | None:
    """The nested schema that holds the last key of `path` (for 'did you mean')."""
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        field = schema.fields.get(part)
        nested = getattr(field, "nested", None) or getattr(
            getattr(field, "inner", None), "nested", None
        )
        if nested is None:
            return None
        schema = nested() if isinstance(nested, type) else nested
    return schema


def _unknown(schema: Schema, path: tuple, known: list[str] | None = None) -> str:
    names = known if known is not None else list((_schema_at(schema, path) or schema).fields)
    close = difflib.get_close_matches(str(path[-1]), names, n=1, cutoff=0.6)
    return "unknown key" + (f"; did you mean {close[0]}?" if close else "")


def parse_profile(data: dict, source: Path | None = None) -> Profile:
    """Validate a profile dict (as read from TOML); raise ProfileError naming the bad key."""
    data = dict(data)
    for table in OPTIONAL_TABLES:
        data.setdefault(table, {})
    schema = ProfileSchema()
    try:
        loaded = schema.load(data)
    except ValidationError as exc:
        path, message = _flatten(exc.messages)[0]
        if message == UNKNOWN:
            message = _unknown(schema, path)
        raise ProfileError(_dotted(path), message) from None
    return _build(loaded, source)


def _texts(custom: dict[str, dict[str, str]], language: str) -> dict[str, dict[str, str]]:
    """The shipped texts overlaid with the clinic's; a key the app does not know is refused."""
    shipped = shipped_texts()
    known = sorted({key for table in shipped.values() for key in table})
    texts = {lang: dict(table) for lang, table in shipped.items()}
    for lang, table in custom.items():
        for key in table:
            if key not in known:
                raise ProfileError(f"texts.{lang}.{key}", _unknown(ProfileSchema(), (key,), known))
        texts.setdefault(lang, {}).update(table)
    if language not in texts:
        raise ProfileError("clinic.language", f"no texts for language {language!r}")
    for table in texts.values():
        for key, value in texts[language].items():
            table.setdefault(key, value)
    return texts


def _build(d: dict, source: Path | None) -> Profile:
    clinic, rem, bc, bk = d["clinic"], d["reminders"], d["broadcasts"], d["booking"]
    texts = _texts(d["texts"], clinic["language"])
    languages = list(texts)

    def localized(value):
        return {lang: value for lang in languages} if isinstance(value, str) else value

    services = [Service(id=s["id"], name=s["name"], duration=s["duration"]) for s in d["services"]]
    return Profile(
        name=clinic["name"],
        timezone=clinic["timezone"],
        language=clinic["language"],
        phone=clinic["phone"],
        address=clinic["address"],
        reminder_offsets=rem["offsets"],
        noshow_followup_after=rem["noshow_followup_after"],
        followup_on_delivered=rem["followup_on_delivered"],
        late_send_min_before=rem["late_send_min_before"],
        thank_you_after_visit=rem["thank_you_after_visit"],
        broadcast_min_interval=bc["min_interval"],
        broadcast_jitter=bc["jitter"],
        broadcast_daily_cap=bc["daily_cap"],
        quiet_hours=bc["quiet_hours"],
        slot_step=bk["slot_step"],
        horizon_days=bk["horizon_days"],
        min_notice=bk["min_notice"],
        idle_reset=bk["idle_reset"],
        handoff_idle=bk["handoff_idle"],
        notify_on_staff_booking=bk["notify_patient_on_staff_booking"],
        # The example profile writes closures inside [booking]; a top-level key also works.
        closures=d["closures"] if d["closures"] is not None else bk["closures"],
        services=services,
        practitioners=[
            Practitioner(
                id=p["id"],
                name=p["name"],
                services=list(
                    p["services"] if p["services"] is not None else [s.id for s in services]
                ),
                hours=p["hours"],
                breaks=p["breaks"],
            )
            for p in d["practitioners"]
        ],
        intake=[
            IntakeQuestion(
                id=q["id"],
                kind=q["kind"],
                prompt=localized(q["prompt"]),
                options=[{"id": o["id"], "title": localized(o["title"])} for o in q["options"]],
            )
            for q in d["intake"]
        ],
        texts=texts,
        source=source,
    )


def load_profile(path: Path) -> Profile:
    """Read and validate the profile at `path`."""
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ProfileError(str(path), "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(str(path), f"not valid TOML: {exc}") from None
    return parse_profile(data, source=Path(path))
