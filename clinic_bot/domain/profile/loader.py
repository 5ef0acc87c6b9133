"""Load the clinic profile: TOML → schema validation → Profile, or one error naming the key."""

from __future__ import annotations

import copy
import difflib
import re
import tomllib
from functools import cache
from pathlib import Path

from marshmallow import Schema, ValidationError

from clinic_bot.domain.profile.fields import check_placeholders
from clinic_bot.domain.profile.model import Faq, IntakeQuestion, Practitioner, Profile, Service
from clinic_bot.domain.profile.schema import (
    FAQ_PLACEHOLDERS,
    OPTIONAL_TABLES,
    ProfileSchema,
)
from clinic_bot.settings import EXAMPLE_PROFILE

UNKNOWN = "Unknown field."
# The first edition's FAQ: `faq_<id>` (answer) and `faq_<id>_triggers` (comma-separated) texts.
LEGACY_FAQ = re.compile(r"^faq_([a-z0-9][a-z0-9_-]*?)(_triggers)?$")


class ProfileError(ValueError):
    """A clinic profile that does not validate; the message names the key."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"clinic profile: {key}: {problem}")
        self.key = key
        self.problem = problem


@cache
def _shipped() -> dict:
    with EXAMPLE_PROFILE.open("rb") as fh:
        return tomllib.load(fh)


def shipped_texts() -> dict[str, dict[str, str]]:
    """The texts shipped with the package: every key a clinic may set, and their defaults."""
    return _shipped().get("texts", {})


def shipped_faq() -> list[dict]:
    """The shipped [[faq]] entries (price, address, hours): a profile without [[faq]] gets them."""
    return copy.deepcopy(_shipped().get("faq", []))


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
    own_faq = "faq" in data
    if not own_faq:
        data["faq"] = shipped_faq()
    schema = ProfileSchema()
    try:
        loaded = schema.load(data)
    except ValidationError as exc:
        path, message = _flatten(exc.messages)[0]
        if message == UNKNOWN:
            message = _unknown(schema, path)
        raise ProfileError(_dotted(path), message) from None
    return _build(loaded, source, own_faq)


def _texts(custom: dict[str, dict[str, str]], language: str) -> dict[str, dict[str, str]]:
    """The shipped texts overlaid with the clinic's; a key the app does not know is refused.

    First-edition FAQ texts (`faq_<id>`, `faq_<id>_triggers`) are left out here; `_faq`
    converts them into FAQ entries.
    """
    shipped = shipped_texts()
    known = sorted({key for table in shipped.values() for key in table})
    texts = {lang: dict(table) for lang, table in shipped.items()}
    for lang, table in custom.items():
        table = {k: v for k, v in table.items() if not LEGACY_FAQ.match(k)}
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


def _faq(entries: list[dict], custom_texts: dict, languages: list[str], own: bool) -> list[Faq]:
    """[[faq]] entries, plus first-edition `faq_<id>` texts converted into entries.

    Without a [[faq]] table the shipped entries apply and such texts change them, language
    by language, exactly as they did as texts. A text for an id the clinic's own [[faq]]
    table defines is refused: one place per answer.
    """
    out = []
    for i, entry in enumerate(entries):
        triggers, answer = entry["triggers"], entry["answer"]
        triggers = (
            {lang: list(triggers) for lang in languages}
            if isinstance(triggers, list)
            else dict(triggers)
        )
        answer = {lang: answer for lang in languages} if isinstance(answer, str) else dict(answer)
        for part, table in (("triggers", triggers), ("answer", answer)):
            for lang in table:
                if lang not in languages:
                    raise ProfileError(
                        f"faq[{i}].{part}.{lang}",
                        f"no texts for language {lang!r} (the profile has {', '.join(languages)})",
                    )
        out.append(Faq(id=entry["id"], triggers=triggers, answer=answer))
    own_ids = {f.id for f in out} if own else set()
    for lang, table in custom_texts.items():
        for key, value in table.items():
            m = LEGACY_FAQ.match(key)
            if not m:
                continue
            faq_id, is_triggers = m.group(1), bool(m.group(2))
            if faq_id in own_ids:
                raise ProfileError(
                    f"texts.{lang}.{key}",
                    f"FAQ {faq_id!r} is also a [[faq]] entry: move this text into it",
                )
            entry = next((f for f in out if f.id == faq_id), None)
            if entry is None:
                entry = Faq(id=faq_id, triggers={}, answer={})
                out.append(entry)
            if is_triggers:
                entry.triggers[lang] = [p.strip() for p in value.split(",") if p.strip()]
            else:
                try:
                    check_placeholders(value, FAQ_PLACEHOLDERS)
                except ValidationError as exc:
                    raise ProfileError(f"texts.{lang}.{key}", exc.messages[0]) from None
                entry.answer[lang] = value
    for entry in out:
        if not entry.answer:
            lang = next(iter(entry.triggers), "en")
            raise ProfileError(
                f"texts.{lang}.faq_{entry.id}_triggers",
                f"has no answer: add faq_{entry.id} (or a [[faq]] entry)",
            )
    return out


def _build(d: dict, source: Path | None, own_faq: bool = True) -> Profile:
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
        sign_staff_replies=bk["sign_staff_replies"],
        retention_keep=d["retention"]["keep"],
        intake_per_visit=bk["intake_per_visit"],
        date_order=bk["date_order"],
        waitlist_batch=bk["waitlist_batch"],
        waitlist_offer_ttl=bk["waitlist_offer_ttl"],
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
                email=p["email"],
                calendar_names=list(p["calendar_names"]),
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
        faq=_faq(d["faq"] or [], d["texts"], languages, own_faq),
        source=source,
        notify_on_import=bk["notify_patient_on_import"],
        phone_region=clinic["phone_region"],
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
