"""Every template obeys the pages' CSP (script-src/style-src 'self'): nothing inline.

Chromium silently skips an inline script under that policy, so a page would lose behaviour
without an error anyone sees: the calendar upload's progress line was lost that way.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[2] / "clinic_bot" / "templates"
INLINE = (
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "a <script> without src"),
    (re.compile(r"<style\b", re.I), "a <style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "a style= attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an on…= handler attribute"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
)


@pytest.mark.parametrize(
    "template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES))
)
def test_no_template_has_inline_script_or_style(template):
    text = template.read_text()
    found = [what for pattern, what in INLINE if pattern.search(text)]
    assert not found, f"{template.name}: {', '.join(found)} (the CSP would block it)"
