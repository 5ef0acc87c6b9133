"""Which of the clinic's languages a first message is written in (lingua, offline models).

The detector also knows a few common languages the clinic may not speak, so that French is
not taken for Spanish; only a profile language is ever returned. When the text is too short
or close to call, the phone's country code decides between the profile's languages.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

# Languages the detector weighs besides the profile's (so a stranger is not forced into one).
DECOYS = ("en", "es", "fr", "de", "it", "pt")
MIN_CONFIDENCE = 0.5
MIN_MARGIN = 0.2
# Region -> main language, for the regions whose patients a clinic most often meets.
_REGION_LANGUAGE = {
    **dict.fromkeys(
        [
            "ES",
            "MX",
            "AR",
            "CO",
            "CL",
            "PE",
            "VE",
            "EC",
            "BO",
            "PY",
            "UY",
            "GT",
            "HN",
            "SV",
            "NI",
            "CR",
            "PA",
            "CU",
            "DO",
            "PR",
            "GQ",
        ],
        "es",
    ),
    **dict.fromkeys(
        [
            "GB",
            "IE",
            "US",
            "CA",
            "AU",
            "NZ",
            "ZA",
            "IN",
            "NG",
            "KE",
            "GH",
            "JM",
            "TT",
            "MT",
            "PH",
            "SG",
        ],
        "en",
    ),
    **dict.fromkeys(["DE", "AT", "LI"], "de"),
    **dict.fromkeys(["FR", "BE", "LU", "MC", "SN", "CI"], "fr"),
    **dict.fromkeys(["IT", "SM", "VA"], "it"),
    **dict.fromkeys(["PT", "BR", "AO", "MZ"], "pt"),
}


def phone_region(phone: str | None) -> str | None:
    """The ISO region of an E.164 number ('34…' -> 'ES'), or None."""
    if not phone:
        return None
    try:
        number = phonenumbers.parse("+" + phone.lstrip("+"))
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(number)


def phone_language(phone: str | None, languages) -> str | None:
    """The language of the phone's country, when the clinic speaks it."""
    lang = _REGION_LANGUAGE.get(phone_region(phone) or "")
    return lang if lang in languages else None


@lru_cache(maxsize=8)
def _detector(codes: tuple[str, ...]):
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    langs = []
    for code in codes:
        iso = getattr(IsoCode639_1, code.upper(), None)
        if iso is not None:
            langs.append(Language.from_iso_code_639_1(iso))
    if len(langs) < 2:
        return None
    return LanguageDetectorBuilder.from_languages(*langs).with_preloaded_language_models().build()


def detect(text: str, languages, phone: str | None = None) -> str | None:
    """The profile language `text` is in; the phone's country breaks a tie; None if unsure."""
    languages = list(languages)
    fallback = phone_language(phone, languages)
    if not text or not any(c.isalpha() for c in text):
        return fallback
    codes = tuple(sorted(set(languages) | set(DECOYS)))
    detector = _detector(codes)
    if detector is None:
        return fallback
    values = detector.compute_language_confidence_values(text)
    if not values:
        return fallback
    top = values[0]
    second = values[1].value if len(values) > 1 else 0.0
    code = top.language.iso_code_639_1.name.lower()
    sure = top.value >= MIN_CONFIDENCE and top.value - second >= MIN_MARGIN
    if sure:
        return code if code in languages else None
    if fallback:
        return fallback
    return code if code in languages and top.value >= MIN_CONFIDENCE else None


def warm_up(languages) -> None:
    """Load the language models now (about a second), not on a patient's first message."""
    _detector(tuple(sorted(set(languages) | set(DECOYS))))
