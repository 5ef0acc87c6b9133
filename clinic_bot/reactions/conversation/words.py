"""Typed answers: normalising what a patient writes and the few words understood everywhere."""

from __future__ import annotations

import re
import unicodedata

# Words understood at every prompt, in every language the example profile ships (en, es).
# They are input vocabulary, not texts we send, so they live here rather than in the profile.
GLOBAL_WORDS: dict[str, set[str]] = {
    "menu": {"menu", "main menu", "inicio", "menu principal", "start over", "empezar"},
    "greeting": {"hi", "hello", "hey", "hola", "buenas", "buenos dias", "good morning"},
    "back": {"back", "go back", "previous", "atras", "volver", "anterior"},
    "cancel": {"cancel", "quit", "exit", "stop booking", "cancelar", "salir"},
    "help": {"help", "ayuda", "what can i do", "que puedo hacer"},
    "language": {"language", "idioma", "lang", "change language", "cambiar idioma"},
    "reception": {
        "reception",
        "talk to reception",
        "human",
        "agent",
        "person",
        "staff",
        "recepcion",
        "hablar con recepcion",
        "persona",
        "humano",
    },
}
# A language's own name switches to it directly.
LANGUAGE_NAMES = {"english": "en", "ingles": "en", "espanol": "es", "spanish": "es"}
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
_NUMBER = re.compile(r"^(?:n(?:o|um|umber|umero)?\s*)?(\d{1,3})$")


def normalize(text: str) -> str:
    """Lower-case, accents and punctuation removed, spaces collapsed: 'Menú!' -> 'menu'."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_NON_WORD.sub(" ", plain.casefold()).split())


def global_word(text: str) -> str | None:
    """Which global word a typed message is ('menu', 'back', …), or None."""
    norm = normalize(text)
    return next((word for word, forms in GLOBAL_WORDS.items() if norm in forms), None)


def language_named(text: str) -> str | None:
    """The language code a message names ('Español' -> 'es'), or None."""
    return LANGUAGE_NAMES.get(normalize(text))


def option_number(text: str) -> int | None:
    """The option number a message gives ('2', '2.', '#2', 'no. 2'), or None."""
    m = _NUMBER.match(normalize(text))
    return int(m.group(1)) if m else None


def match_option(text: str, options: list[list[str]]) -> str | None:
    """The value of the option a typed message picks: its number, title or an alias."""
    number = option_number(text)
    if number is not None:
        return options[number - 1][0] if 1 <= number <= len(options) else None
    norm = normalize(text)
    if not norm:
        return None
    hits = [opt[0] for opt in options if norm in {normalize(t) for t in opt[1:]}]
    return hits[0] if len(set(hits)) == 1 else None
