"""Text normalisation shared by the parsers: lower case, accents off, spaces collapsed."""

from __future__ import annotations

import re
import unicodedata

_KEEP_DATE = re.compile(r"[^\w:/.\-]+", re.UNICODE)
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)


def fold(text: str) -> str:
    """Lower case without accents: 'Miércoles' -> 'miercoles' (punctuation kept)."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words_only(text: str) -> str:
    """Folded, punctuation removed, spaces collapsed: 'Menú!' -> 'menu'."""
    return " ".join(_NON_WORD.sub(" ", fold(text)).split())


def for_dates(text: str) -> str:
    """Folded with the punctuation dates and times use (: / . -) kept, padded with spaces."""
    cleaned = " ".join(_KEEP_DATE.sub(" ", fold(text)).split())
    cleaned = re.sub(r"(?<=\D)[.\-](?=\s|$)", " ", cleaned)  # a full stop ending a word
    return f" {' '.join(cleaned.split())} "
