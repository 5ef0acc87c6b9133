"""The whole loop, end to end over real HTTP: a patient says hi and sees the menu."""


def test_hi_shows_the_menu_with_three_buttons(live):
    live.patient("4915112345678", text="hi")
    menu = live.wait_for(
        lambda: [m for m in live.outgoing("4915112345678") if m.get("buttons")], timeout=5
    )
    titles = [b["title"] for b in menu[0]["buttons"]]
    assert titles == ["Book", "My appointments", "Talk to reception"]
