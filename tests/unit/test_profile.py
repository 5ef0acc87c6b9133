"""The clinic profile: the shipped example loads; a bad profile stops start-up with a message
that names the key and the problem (in the loader, in the runtime and in `clinic-bot`)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from clinic_bot.bootstrap import build_runtime
from clinic_bot.domain.profile import ProfileError, load_profile, parse_profile
from clinic_bot.settings import EXAMPLE_PROFILE, Settings

CLINIC_BOT = Path(sys.executable).with_name("clinic-bot")
TOKEN_CREATE = ["api-token", "create", "tests"]


def example() -> dict:
    with EXAMPLE_PROFILE.open("rb") as fh:
        return tomllib.load(fh)


def test_the_shipped_example_profile_loads():
    profile = load_profile(EXAMPLE_PROFILE)
    assert profile.name == "Sunrise Family Clinic"
    assert [label for label, _ in profile.reminder_offsets] == ["24h", "2h"]
    assert profile.text("menu_body", "es", name_part="").startswith("¡Hola")


def test_a_profile_with_only_the_contract_keys_loads_and_gets_every_text():
    minimal = """
[clinic]
name = "Tiny Clinic"
timezone = "America/Bogota"
language = "es"

[[services]]
id = "checkup"
name = "Consulta"
duration = "20m"

[[practitioners]]
id = "dr-ruiz"
name = "Dra. Ruiz"
hours = { mon = ["09:00-12:00"] }
"""
    profile = parse_profile(tomllib.loads(minimal))
    assert profile.text("opted_out", "es").startswith("No recibirá más mensajes de Tiny Clinic")
    assert profile.text("opted_out", "en").startswith("You will not receive")


def broken(path: str, value) -> dict:
    """The example profile with one key set (or, for value DELETE, removed)."""
    data = example()
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()

CASES = [
    ("clinic", DELETE, "clinic", "required"),
    ("clinic.name", DELETE, "clinic.name", "required"),
    ("clinic.name", 42, "clinic.name", "must be a str"),
    ("clinic.timezone", "Mars/Olympus_Mons", "clinic.timezone", "IANA"),
    ("clinic.timezone", DELETE, "clinic.timezone", "required"),
    ("clinic.language", "fr", "clinic.language", "no texts"),
    ("reminders.offsets", ["24h", "2 weeks"], "reminders.offsets[1]", "duration"),
    ("reminders.offsets", ["24h", "24h"], "reminders.offsets", "twice"),
    ("reminders.offsets", "24h", "reminders.offsets", "list"),
    ("reminders.offsets", ["0h"], "reminders.offsets[0]", "more than zero"),
    ("reminders.noshow_followup_after", "soon", "reminders.noshow_followup_after", "duration"),
    ("reminders", "weekly", "reminders", "table"),
    ("broadcasts.quiet_hours", ["25:00", "08:00"], "broadcasts.quiet_hours", "time"),
    ("broadcasts.quiet_hours", ["21:00"], "broadcasts.quiet_hours", "[start, end]"),
    ("broadcasts.daily_cap", 0, "broadcasts.daily_cap", "at least 1"),
    ("broadcasts.daily_cap", True, "broadcasts.daily_cap", "whole number"),
    ("broadcasts.min_interval", 3, "broadcasts.min_interval", "duration"),
    ("broadcasts", ["x"], "broadcasts", "table"),
    ("booking.horizon_days", 0, "booking.horizon_days", "1 to 365"),
    ("booking.slot_step", "0m", "booking.slot_step", "more than zero"),
    ("booking", 7, "booking", "table"),
    ("services", DELETE, "services", "at least one"),
    ("services.0.duration", "twenty minutes", "services[0].duration", "duration"),
    ("services.0.duration", "0m", "services[0].duration", "more than zero"),
    ("services.0.id", DELETE, "services[0].id", "required"),
    ("practitioners", DELETE, "practitioners", "at least one"),
    ("practitioners.0.services", ["xray"], "practitioners[0].services", "unknown service"),
    ("practitioners.0.services", "checkup", "practitioners[0].services", "list"),
    ("practitioners.0.hours", DELETE, "practitioners[0].hours", "required"),
    ("practitioners.0.hours", {"mon": ["17:00-09:00"]}, "practitioners[0].hours.mon", "ends"),
    ("practitioners.0.hours", {"funday": ["09:00-10:00"]}, "practitioners[0].hours.funday", "day"),
    ("practitioners.0.hours", {"mon": "09:00-12:00"}, "practitioners[0].hours.mon", "list"),
    ("practitioners.0.hours", {"mon": ["9-12"]}, "practitioners[0].hours.mon", "range"),
    ("practitioners.0.id", "any", "practitioners[0].id", "reserved"),
    ("booking.closures", ["2026-13-01"], "booking.closures[0]", "date"),
    ("texts", "hello", "texts", "table"),
    ("texts.en", "hello", "texts.en", "table"),
    ("intake.0.options", [], "intake[0].options", "needs options"),
    ("intake.0.kind", "slider", "intake[0].kind", "buttons, list, text"),
    ("faq", {"id": "x"}, "faq", "array of tables"),
    ("faq.0.id", "Parking Lot", "faq[0].id", "lower-case letters"),
    ("faq.1.id", "price", "faq[1].id", "duplicate FAQ id 'price'"),
    ("faq.0.triggers", "price, cost", "faq[0].triggers", "list of phrases"),
    ("faq.0.triggers", {"en": []}, "faq[0].triggers.en", "list of phrases"),
    ("faq.0.triggers", {"en": ["price", ""]}, "faq[0].triggers.en", "phrase 2"),
    ("faq.0.triggers", DELETE, "faq[0].triggers", "required"),
    ("faq.0.answer", DELETE, "faq[0].answer", "required"),
    ("faq.0.answer", {"en": "At {adress}"}, "faq[0].answer.en", "unknown placeholder {adress}"),
    ("faq.0.answer", "Costs {60 EUR", "faq[0].answer", "{{"),
    ("faq.0.answer", {"fr": "Gratuit"}, "faq[0].answer.fr", "no texts for language 'fr'"),
]


@pytest.mark.parametrize(
    "path, value, key, problem", CASES, ids=[f"{c[0]}={c[1]!r}"[:60] for c in CASES]
)
def test_a_bad_profile_is_refused_with_a_message_naming_the_key(path, value, key, problem):
    with pytest.raises(ProfileError) as err:
        parse_profile(broken(path, value))
    assert err.value.key == key
    assert problem in err.value.problem
    assert str(err.value).startswith(f"clinic profile: {key}: ")


def test_a_file_that_is_not_toml_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "clinic.toml"
    path.write_text("[clinic\nname = 'x'\n")
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert err.value.key == str(path)
    assert "not valid TOML" in err.value.problem


def test_a_missing_profile_file_is_refused_naming_the_file(tmp_path):
    with pytest.raises(ProfileError) as err:
        load_profile(tmp_path / "nowhere.toml")
    assert "file not found" in str(err.value)


def write_profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clinic.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_runtime_does_not_start_with_a_bad_profile(tmp_path, database_url):
    text = EXAMPLE_PROFILE.read_text().replace('"Europe/Berlin"', '"Europe/Atlantis"')
    path = write_profile(tmp_path, text)
    settings = Settings.from_env(
        env={
            "DATABASE_URL": database_url,
            "CLINIC_CONFIG": str(path),
            "SECRET_KEY": "k",
            "WHAPI_WEBHOOK_SECRET": "s",
        },
        instance_path=tmp_path / "instance",
    )
    with pytest.raises(ProfileError) as err:
        build_runtime(settings)
    assert err.value.key == "clinic.timezone"


@pytest.mark.parametrize(
    "old, new, key, command",
    [
        ('"Europe/Berlin"', '"Europe/Atlantis"', "clinic.timezone", ["worker"]),
        ('duration = "20m"', 'duration = "20 minutes"', "services[0].duration", ["worker"]),
        (
            "daily_cap = 1000",
            "daily_cap = -5",
            "broadcasts.daily_cap",
            ["api-token", "create", "x"],
        ),
    ],
)
def test_clinic_bot_commands_stop_with_the_key_named(
    tmp_path, database_url, old, new, key, command
):
    text = EXAMPLE_PROFILE.read_text()
    assert old in text
    path = write_profile(tmp_path, text.replace(old, new))
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        CLINIC_CONFIG=str(path),
        CLINIC_BOT_INSTANCE=str(tmp_path / "instance"),
        SECRET_KEY="k",
        WHAPI_WEBHOOK_SECRET="s",
    )
    done = subprocess.run(
        [str(CLINIC_BOT), *command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"clinic profile: {key}: " in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "path, value, key, problem",
    [
        ("reminders.ofsets", ["24h"], "reminders.ofsets", "unknown key; did you mean offsets?"),
        ("clinic.timezon", "Europe/Berlin", "clinic.timezon", "did you mean timezone?"),
        ("booking.slot_stepp", "15m", "booking.slot_stepp", "did you mean slot_step?"),
        ("services.0.durration", "20m", "services[0].durration", "did you mean duration?"),
        ("practitioners.0.hour", {}, "practitioners[0].hour", "did you mean hours?"),
        ("remindrs", {}, "remindrs", "did you mean reminders?"),
        ("texts.en.menu_bdy", "Hi", "texts.en.menu_bdy", "did you mean menu_body?"),
        ("payments", {"iban": "x"}, "payments", "unknown key"),
        ("faq.0.answers", "Free", "faq[0].answers", "did you mean answer?"),
    ],
)
def test_a_misspelled_or_unknown_key_is_refused_with_a_suggestion(path, value, key, problem):
    with pytest.raises(ProfileError) as err:
        parse_profile(broken(path, value))
    assert err.value.key == key
    assert problem in err.value.problem


def test_the_schema_documents_every_key_with_its_default():
    from clinic_bot.domain.profile.schema import describe

    table = describe()
    assert "| `reminders.offsets` | ['24h', '2h'] |" in table
    assert "| `clinic.name` | required |" in table
    assert "| `booking.horizon_days` | 30 |" in table


def test_docs_profile_md_is_the_schema_as_it_is():
    """docs/profile.md is generated from the schema; a new key must show up there too."""
    from clinic_bot.domain.profile.schema import describe

    doc = (Path(__file__).resolve().parents[2] / "docs" / "profile.md").read_text(encoding="utf-8")
    assert doc.endswith(describe()), (
        "regenerate docs/profile.md: python -m clinic_bot.domain.profile"
    )


# ---------------------------------------------------------------------------- FAQ


def _faq(profile, faq_id: str):
    return next(f for f in profile.faq if f.id == faq_id)


def test_the_example_ships_price_address_and_hours_as_faq_entries_in_both_languages():
    profile = load_profile(EXAMPLE_PROFILE)
    assert [f.id for f in profile.faq] == ["price", "address", "hours"]
    assert "where are you" in profile.faq_triggers("address", "en")
    assert "donde estan" in profile.faq_triggers("address", "es")
    answer = profile.faq_answer(
        "address", "es", address="Calle 1", map_link="M", hours="", phone=""
    )
    assert answer == "Estamos en Calle 1.\nMapa: M"
    assert not any(k.startswith("faq_") for table in profile.texts.values() for k in table)


def test_a_profile_without_faq_gets_the_shipped_entries_and_with_one_only_its_own():
    data = example()
    del data["faq"]
    assert [f.id for f in parse_profile(data).faq] == ["price", "address", "hours"]
    data["faq"] = [{"id": "parking", "triggers": ["parking"], "answer": "Behind the clinic."}]
    profile = parse_profile(data)
    assert [f.id for f in profile.faq] == ["parking"]
    assert profile.faq_triggers("parking", "es") == ["parking"]  # one list for every language
    assert profile.faq_answer("parking", "es") == "Behind the clinic."


def test_first_edition_faq_texts_are_converted_into_entries_at_load():
    data = example()
    del data["faq"]
    data["texts"]["en"]["faq_price"] = "Visits cost 50 EUR."
    data["texts"]["en"]["faq_parking_triggers"] = "parking, where can I park"
    data["texts"]["en"]["faq_parking"] = "Free parking at {address}."
    profile = parse_profile(data)
    assert [f.id for f in profile.faq] == ["price", "address", "hours", "parking"]
    assert profile.faq_answer("price", "en") == "Visits cost 50 EUR."
    assert profile.faq_answer("price", "es").startswith("Una revisión")  # shipped, untouched
    assert profile.faq_triggers("parking", "en") == ["parking", "where can I park"]
    assert profile.faq_triggers("parking", "es") == ["parking", "where can I park"]
    assert profile.faq_answer("parking", "es", address="Lindenstr. 1") == (
        "Free parking at Lindenstr. 1."
    )


@pytest.mark.parametrize(
    ("texts", "key", "problem"),
    [
        ({"faq_price": "Free."}, "texts.en.faq_price", "also a [[faq]] entry"),
        ({"faq_parking_triggers": "parking"}, "texts.en.faq_parking_triggers", "no answer"),
        ({"faq_parking": "At {adress}"}, "texts.en.faq_parking", "unknown placeholder"),
    ],
)
def test_first_edition_faq_texts_that_cannot_work_are_refused_naming_the_key(texts, key, problem):
    data = example()  # with the example's own [[faq]] table
    data["texts"]["en"].update(texts)
    with pytest.raises(ProfileError) as err:
        parse_profile(data)
    assert err.value.key == key
    assert problem in err.value.problem
