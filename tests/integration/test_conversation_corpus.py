"""The scripted conversations in tests/conversations/*.json, each one test, over real HTTP:
the sandbox simulator posts each patient action as a Whapi webhook to the app on loopback,
and every reply goes out through the relay to the sandbox gateway, which checks it as Whapi
would."""

from __future__ import annotations

import pytest

from tests.conversations.http_chat import HttpChat
from tests.conversations.script import Runner, load_corpus

CORPUS = load_corpus()


def test_the_corpus_holds_at_least_sixty_conversations_with_off_script_ones():
    offscript = [
        s for s in CORPUS if any(step[0] in ("media", "location", "other") for step in s["steps"])
    ]
    assert len(CORPUS) >= 60
    assert len(offscript) >= 5
    assert len({s["name"] for s in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("script", CORPUS, ids=[s["name"] for s in CORPUS])
def test_scripted_conversation(live_server, clock, script):
    live_server.http.put(f"{live_server.base_url}/sandbox/api/settings", json={"auto_read": False})
    chat = HttpChat(live_server)
    try:
        Runner(live_server.runtime, clock, script, chat=chat).run()
    finally:
        chat.close()
