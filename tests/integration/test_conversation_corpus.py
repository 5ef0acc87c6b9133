"""The scripted conversations in tests/conversations/*.json, each one test."""

from __future__ import annotations

import pytest

from tests.conversations.script import Runner, load_corpus

CORPUS = load_corpus()


def test_the_corpus_holds_at_least_thirty_conversations_with_off_script_ones():
    offscript = [
        s for s in CORPUS if any(step[0] in ("media", "location", "other") for step in s["steps"])
    ]
    assert len(CORPUS) >= 30
    assert len(offscript) >= 5
    assert len({s["name"] for s in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("script", CORPUS, ids=[s["name"] for s in CORPUS])
def test_scripted_conversation(runtime, clock, script):
    Runner(runtime, clock, script).run()
