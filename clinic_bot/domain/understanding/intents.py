"""What a typed message asks for, from the profile's phrase lists (accent- and typo-tolerant).

The phrases come from the profile (`intent_<name>` texts, comma-separated, and the [[faq]]
entries' trigger lists, per language), so a clinic adds the words its patients use without a
code change. A phrase found whole in the message wins; otherwise a close spelling (rapidfuzz
ratio) of a phrase of at least five letters counts, so "cancle my apointment" still cancels.
"""

from __future__ import annotations

from rapidfuzz import fuzz

from clinic_bot.domain.understanding.text import words_only

FUZZY_MIN_LEN = 5  # shorter phrases ("ok", "thx") must be typed exactly
FUZZY_SCORE = 84.0
THANKS_EMOJI = "👍🙏👌❤😊🙂✅💪🤝🥰😀😃"


def phrases(raw: str) -> list[str]:
    """A comma-separated profile text as normalised phrases."""
    return phrase_list((raw or "").split(","))


def phrase_list(items) -> list[str]:
    """A list of profile phrases, normalised (empty ones dropped)."""
    return [p for p in (words_only(item) for item in items or ()) if p]


def score(text: str, phrase: str) -> float:
    """How well `phrase` occurs in `text` (both normalised): 100+ whole, else fuzzy, else 0."""
    if not phrase:
        return 0.0
    if f" {phrase} " in f" {text} ":
        return 100.0 + len(phrase) / 100
    if len(phrase) < FUZZY_MIN_LEN:
        return 0.0
    tokens = text.split()
    width = len(phrase.split())
    best = 0.0
    for size in {width, width + 1, max(1, width - 1)}:
        for i in range(0, max(1, len(tokens) - size + 1)):
            window = " ".join(tokens[i : i + size])
            if abs(len(window) - len(phrase)) > max(2, len(phrase) // 4):
                continue
            best = max(best, fuzz.ratio(window, phrase))
    return best if best >= FUZZY_SCORE else 0.0


def match(text: str, vocabulary: dict[str, list[str]]) -> str | None:
    """The intent whose phrase fits the message best, or None."""
    if not (text or "").strip():
        return None
    norm = words_only(text)
    if not norm:
        return "thanks" if any(c in THANKS_EMOJI for c in text) and "thanks" in vocabulary else None
    # The longest phrase that fits wins ("cancel my appointment" over "my appointment"),
    # a typo costing its share: weight = letters matched x closeness.
    best, best_weight = None, 0.0
    for intent, forms in vocabulary.items():
        for phrase in forms:
            s = score(norm, phrase)
            weight = len(phrase) * min(s, 100.0) / 100 + (0.01 if s > 100 else 0.0)
            if s and weight > best_weight:
                best, best_weight = intent, weight
    return best
