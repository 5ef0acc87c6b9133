"""`python -m clinic_bot.domain.profile`: rewrite docs/profile.md's key table from the schema."""

from pathlib import Path

from clinic_bot.domain.profile.schema import describe

DOC = Path(__file__).resolve().parents[3] / "docs" / "profile.md"
MARK = "| key | default | meaning |"

text = DOC.read_text(encoding="utf-8")
DOC.write_text(text[: text.index(MARK)] + describe(), encoding="utf-8")
print(f"wrote {DOC.name}")
