"""The entry point: one patient event in, the next state and the replies out.

Order of business for every event (after STOP/START, which the handler does first):
1. a handoff in progress keeps the bot silent, until it idles out;
2. a conversation idle for `idle_reset` starts again at the menu;
3. taps: appointment actions work from any state; prompt taps must belong to the current
   prompt and name one of its options, else the patient is told and shown the prompt again;
4. typed text: global words, then the option's number or title, then back/cancel;
5. anything else is a miss: the first repeats the prompt with what the bot understands,
   the second offers the menu and reception, the third hands the chat to reception.
"""

from __future__ import annotations

from datetime import datetime

from clinic_bot.domain import events as ev
from clinic_bot.domain.messages import Button
from clinic_bot.reactions.conversation import ids, steps, words
from clinic_bot.reactions.conversation.table import RESTING
from clinic_bot.reactions.conversation.turn import Option, Turn

MISSES_BEFORE_OFFER = 2
MISSES_BEFORE_HANDOFF = 3
VOICE = {"audio", "voice"}


def show_menu(ctx, patient) -> None:
    """Queue the clinic's main menu and make it the patient's current prompt."""
    turn = Turn.load(ctx, patient)
    steps.enter_menu(turn)
    turn.save()


def respond(ctx, patient, event: ev.PatientMessage) -> str:
    """Answer one patient event; returns a short outcome for the inbox record."""
    turn = Turn.load(ctx, patient)
    if patient.handoff_since is not None:
        if handoff_active(turn):
            return "handoff: left to reception"
        patient.handoff_since = None
        turn.rest("idle")
    elif _idle_too_long(turn):
        turn.rest("idle")
    outcome = _dispatch(turn, event)
    turn.save()
    return outcome


def last_activity(turn: Turn) -> datetime:
    """The latest of: handoff start and the last staff activity (not the patient's messages)."""
    p = turn.patient
    times = [p.handoff_since, p.handoff_staff_at]
    staff_at = turn.data.get("staff_at")
    if staff_at:
        times.append(datetime.fromisoformat(staff_at))
    return max(t for t in times if t is not None)


def handoff_active(turn: Turn) -> bool:
    """True while the handoff has seen activity within the profile's `handoff_idle`."""
    return turn.now - last_activity(turn) < turn.profile.handoff_idle


def _idle_too_long(turn: Turn) -> bool:
    last = turn.patient.last_inbound_at
    return (
        turn.state not in RESTING
        and last is not None
        and turn.now - last >= turn.profile.idle_reset
    )


def _dispatch(turn: Turn, event: ev.PatientMessage) -> str:
    if isinstance(event, ev.ButtonTapped):
        return _tap(turn, event.button_id)
    if isinstance(event, ev.ListPicked):
        return _tap(turn, event.row_id)
    if isinstance(event, ev.TextReceived) and event.text.strip():
        return _text(turn, event.text)
    return _miss(turn, _offscript_kind(event))


def _offscript_kind(event: ev.PatientMessage) -> str:
    if isinstance(event, ev.MediaReceived):
        return "voice" if event.media_type in VOICE else "media"
    if isinstance(event, ev.LocationReceived):
        return "location"
    if isinstance(event, ev.TextReceived):
        return "text"
    return "other"


# ---------------------------------------------------------------------------- taps


def _tap(turn: Turn, raw: str) -> str:
    tap = ids.parse(raw)
    if isinstance(tap, ids.ApptTap):
        appt = steps.own_appointment(turn, tap.appointment_id, tap.version)
        if appt is None:
            steps.stale_appointment(turn)
            return "stale appointment tap"
        turn.data["misses"] = 0
        steps.appointment_action(turn, appt, tap.action)
        return f"appointment {tap.action}"
    if isinstance(tap, ids.CommandTap):
        return _command(turn, tap.command)
    if (
        isinstance(tap, ids.ChoiceTap)
        and turn.state not in RESTING
        and tap.seq == turn.patient.prompt_seq
        and turn.offered(tap.value)
    ):
        return _choose(turn, tap.value)
    turn.say("conv_stale")
    steps.repeat_or_menu(turn)
    return "stale tap"


def _choose(turn: Turn, value: str) -> str:
    state = turn.state
    turn.data["misses"] = 0
    steps.CHOOSE[state](turn, value)
    return f"{state}: {value}"


def _command(turn: Turn, command: str) -> str:
    turn.data["misses"] = 0
    if command == "reception":
        steps.enter_handoff(turn)
        return "handoff"
    if command in ("book", "appointments"):
        # Straight on, as if the menu's button had been tapped ("Book again" after a visit).
        turn.state, turn.data = "menu", {"stack": []}
        steps.choose_menu(turn, command)
        return f"menu: {command}"
    steps.enter_menu(turn)
    return "menu"


# ---------------------------------------------------------------------------- typed text


def _text(turn: Turn, text: str) -> str:
    word = words.global_word(text)
    named = None if turn.expects_text else words.language_named(text)
    if named not in turn.profile.languages:
        named = None
    if word == "help":
        turn.say("conv_help")
        steps.repeat_or_menu(turn)
        return "help"
    if word == "reception":
        turn.data["misses"] = 0
        steps.enter_handoff(turn)
        return "handoff"
    if word == "language":
        turn.data["misses"] = 0
        steps.enter_language(turn)
        return "language asked"
    if named and turn.state != "language":
        steps.set_language(turn, named)
        steps.enter_menu(turn)
        return f"language {named}"
    if word in ("menu", "greeting") or turn.state in RESTING or not turn.data.get("prompt"):
        # Any text from a patient who is not mid-flow gets the main menu (CONTRACT §8).
        steps.enter_menu(turn)
        return "menu"
    if turn.options:
        value = words.match_option(text, turn.options)
        if value is not None:
            return _choose(turn, value)
    elif turn.expects_text and word is None:
        state = turn.state
        answer = steps.ANSWER_TEXT.get(state)
        if answer is not None and answer(turn, text):
            turn.data["misses"] = 0
            return f"{state}: answered"
    if word == "back":
        turn.data["misses"] = 0
        steps.back(turn)
        return "back"
    if word == "cancel":
        turn.say("conv_flow_cancelled")
        steps.enter_menu(turn)
        return "cancelled"
    return _miss(turn, "text")


# ---------------------------------------------------------------------------- misses


def _miss(turn: Turn, kind: str) -> str:
    """Something the bot cannot use: explain, then offer help, then hand over to reception."""
    hint = turn.t(f"conv_offscript_{kind}")
    if turn.state in RESTING or not turn.data.get("prompt"):
        turn.say("conv_not_understood", hint=hint)
        steps.enter_menu(turn)
        turn.data["misses"] = 1
        return f"off-script {kind}: menu"
    misses = int(turn.data.get("misses", 0)) + 1
    turn.data["misses"] = misses
    if misses >= MISSES_BEFORE_HANDOFF:
        steps.enter_handoff(turn, auto=True)
        return f"off-script {kind}: handed to reception"
    if misses >= MISSES_BEFORE_OFFER:
        _offer_way_out(turn, hint)
        return f"off-script {kind}: offered menu and reception"
    turn.say("conv_not_understood", hint=hint)
    turn.send_prompt()
    return f"off-script {kind}: prompt repeated"


def _offer_way_out(turn: Turn, hint: str) -> None:
    """A different reply from the first miss: the way back to the menu or to a person."""
    buttons = [
        Option("menu", turn.t("conv_main_menu"), tap_id=ids.command_id("menu")),
        Option("reception", turn.t("menu_reception"), tap_id=ids.command_id("reception")),
    ]
    turn.ctx.outbox.buttons(
        turn.patient,
        turn.t("conv_still_lost", hint=hint),
        [Button(o.tap_id, o.title) for o in buttons],
    )
