"""The entry point: one patient event in, the next state and the replies out.

Order of business for every event (after STOP/START, which the handler does first):
1. a handoff in progress leaves the chat to reception, but MENU ends it (on the patient's
   side; reception gets an alert) and appointment taps (a reminder's Confirm…) still work;
2. a conversation idle for `idle_reset` starts again at the menu;
3. taps: appointment actions work from any state; prompt taps must belong to the current
   prompt and name one of its options, else the patient is told and shown the prompt again;
4. typed text: global words, then the option's number or title, then back/cancel, then
   what the message asks (understand.py: intents, FAQ, dates and times);
5. anything else is a miss: the reply lists the numbered options that can be typed; from
   the second miss in a row it offers the menu and reception. Only the patient starts a
   handoff.
"""

from __future__ import annotations

from datetime import datetime

from clinic_bot.domain import events as ev
from clinic_bot.domain.messages import Button
from clinic_bot.domain.understanding import language
from clinic_bot.reactions.conversation import ids, steps, understand, waitlist, words
from clinic_bot.reactions.conversation.table import RESTING
from clinic_bot.reactions.conversation.turn import Option, Turn

MISSES_BEFORE_OFFER = 2
VOICE = {"audio", "voice"}


def show_menu(ctx, patient) -> None:
    """Queue the clinic's main menu and make it the patient's current prompt."""
    turn = Turn.load(ctx, patient)
    steps.enter_menu(turn)
    turn.save()


def respond(ctx, patient, event: ev.PatientMessage) -> str:
    """Answer one patient event; returns a short outcome for the inbox record."""
    turn = Turn.load(ctx, patient)
    if patient.language is None and patient.last_inbound_at is None and _is_text(event):
        _detect_language(turn, event.text)
    if patient.handoff_since is not None:
        if handoff_active(turn):
            outcome = _during_handoff(turn, event)
            turn.save()
            return outcome
        patient.handoff_since = None
        turn.rest("idle")
    elif _idle_too_long(turn):
        turn.rest("idle")
    if turn.state == "wrong_number" and not _speaks_to_bot(turn, event):
        return "wrong number: not answered"
    outcome = _dispatch(turn, event)
    turn.save()
    return outcome


def _is_text(event) -> bool:
    return isinstance(event, ev.TextReceived) and bool(event.text.strip())


def _detect_language(turn: Turn, text: str) -> None:
    """A first message decides the patient's language (when it is one the clinic speaks)."""
    code = language.detect(text, turn.profile.languages, turn.patient.phone)
    if code:
        steps.set_language(turn, code)


def _speaks_to_bot(turn: Turn, event: ev.PatientMessage) -> bool:
    """After "wrong number" the bot keeps quiet unless spoken to (a tap, MENU, a request)."""
    if not isinstance(event, ev.TextReceived):
        return isinstance(event, (ev.ButtonTapped, ev.ListPicked))
    if words.global_word(event.text):
        return True
    vocab = understand.vocabulary(turn.profile, turn.lang)
    intent = understand.intents.match(event.text, vocab)
    return intent not in (None, "thanks", "wrong_number")


def _during_handoff(turn: Turn, event: ev.PatientMessage) -> str:
    """Reception has the chat: MENU and appointment taps still reach the bot, nothing else."""
    raw = getattr(event, "button_id", None) or getattr(event, "row_id", None)
    tap = ids.parse(raw) if raw else None
    text = event.text if isinstance(event, ev.TextReceived) else ""
    if isinstance(tap, ids.WaitlistTap):
        _end_handoff(turn)  # a booking through the bot: the patient is back with it
        return f"handoff: {waitlist.answer(turn, tap.offer_id, tap.action)}"
    if isinstance(tap, ids.ApptTap):
        kept = dict(turn.data)
        outcome = _tap(turn, raw)
        if tap.action == "confirm" or turn.state == "appointment":
            # A reminder's Confirm: done by the bot, the chat stays with reception.
            turn.state, turn.data = "handoff", kept
        else:
            _end_handoff(turn)
        return f"handoff: {outcome}"
    if (isinstance(tap, ids.CommandTap) and tap.command == "menu") or (
        text and words.global_word(text) == "menu"
    ):
        _end_handoff(turn)
        steps.enter_menu(turn)
        return "handoff ended by the patient: menu"
    if not turn.data.get("told_closed"):
        note = understand.closed_note(turn)
        if note:
            turn.ctx.outbox.text(turn.patient, note)
            turn.data["told_closed"] = True
            return "handoff: told when reception answers"
    return "handoff: left to reception"


def _end_handoff(turn: Turn) -> None:
    """The patient left the handoff; reception sees it as an alert."""
    turn.patient.handoff_since = None
    understand.alert(turn, "handoff_ended")


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
    if isinstance(tap, ids.WaitlistTap):
        turn.data["misses"] = 0
        return waitlist.answer(turn, tap.offer_id, tap.action)
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
    (steps.CHOOSE.get(state) or waitlist.CHOOSE[state])(turn, value)
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
    if word in ("menu", "greeting"):
        steps.enter_menu(turn)
        return "menu"
    if turn.state in RESTING or not turn.data.get("prompt"):
        # Any text from a patient who is not mid-flow gets the main menu (CONTRACT §8),
        # unless it asks for something the bot understands: then it gets the answer.
        understood = understand.understand(turn, text)
        if understood:
            turn.data["misses"] = 0
            return understood
        if turn.state in RESTING and turn.state != "idle":
            return _miss(turn, "text")
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
    if not turn.expects_text:
        understood = understand.understand(turn, text)
        if understood:
            turn.data["misses"] = 0
            return understood
    return _miss(turn, "text")


# ---------------------------------------------------------------------------- misses


def _numbered(options: list[list[str]]) -> str:
    return "\n".join(f"{i}. {opt[1]}" for i, opt in enumerate(options, 1))


def _miss(turn: Turn, kind: str) -> str:
    """Something the bot cannot use: say what can be typed; from the second, offer a person."""
    hint = turn.t(f"conv_offscript_{kind}")
    if turn.state in RESTING or not turn.data.get("prompt"):
        turn.say("conv_not_understood", hint=hint, options=_numbered(steps.menu_typed(turn)))
        steps.enter_menu(turn)
        turn.data["misses"] = 1
        return f"off-script {kind}: menu"
    misses = int(turn.data.get("misses", 0)) + 1
    turn.data["misses"] = misses
    if misses >= MISSES_BEFORE_OFFER:
        _offer_way_out(turn, hint)
        return f"off-script {kind}: offered menu and reception"
    _explain(turn, hint, kind)
    turn.send_prompt()
    return f"off-script {kind}: prompt repeated"


def _explain(turn: Turn, hint: str, kind: str) -> None:
    """What went wrong, and the numbered options the current prompt accepts typed."""
    options = turn.options
    if options and turn.data.get("prompt", {}).get("kind") != "text":
        turn.say("conv_not_understood", hint=hint, options=_numbered(options))
    else:
        turn.say("conv_not_understood_text", hint=hint)


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
