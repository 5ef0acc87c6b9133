"""One turn of the conversation: the patient's state loaded, prompts sent, the state saved.

A prompt is stored in `state_data["prompt"]` exactly as sent (ids included), and its options
in `state_data["opts"]` as `[value, title, *aliases]`, so a tap is checked against what this
patient was actually offered and a typed answer can be matched to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clinic_bot.domain.messages import Button, Row
from clinic_bot.reactions.conversation import ids

MAX_STACK = 30  # prompts remembered for "back"; paging can only add a few per flow


@dataclass
class Option:
    """One choice on a prompt; `tap_id` overrides the prompt-bound id (appointment actions)."""

    value: str
    title: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    tap_id: str | None = None


@dataclass
class Turn:
    """What one handler call works on: context, patient, and the state being changed."""

    ctx: object
    patient: object
    state: str = ""
    data: dict = field(default_factory=dict)
    lang: str = ""

    @classmethod
    def load(cls, ctx, patient) -> Turn:
        """The patient's stored state as a working copy."""
        lang = patient.language or ctx.profile.language
        if lang not in ctx.profile.texts:
            lang = ctx.profile.language
        return cls(ctx, patient, patient.state or "idle", dict(patient.state_data or {}), lang)

    @property
    def profile(self):
        return self.ctx.profile

    @property
    def session(self):
        return self.ctx.session

    @property
    def now(self):
        return self.ctx.now

    def t(self, key: str, **values) -> str:
        """A profile text in the patient's language."""
        return self.profile.text(key, self.lang, **values)

    def say(self, key: str, **values) -> None:
        """Send one text from the profile."""
        self.ctx.outbox.text(self.patient, self.t(key, **values))

    def save(self) -> None:
        """Write the state back (JSON columns need a new object to notice the change)."""
        self.patient.state = self.state
        self.patient.state_data = dict(self.data)

    # ------------------------------------------------------------------ prompts

    def rest(self, state: str) -> None:
        """Enter a state that waits for nothing in particular (after booking, cancelling…)."""
        self.state = state
        self.data = {}

    def prompt(
        self,
        state: str,
        kind: str,
        body: str,
        options: list[Option] = (),
        *,
        label: str = "",
        section: str = "",
        footer: str = "",
        arg=None,
        push: bool = True,
    ) -> None:
        """Send a new prompt (buttons, list or free text) and make it the current one."""
        self.patient.prompt_seq = (self.patient.prompt_seq or 0) + 1
        seq = self.patient.prompt_seq
        items = [[o.tap_id or ids.choice_id(seq, o.value), o.title, o.description] for o in options]
        self.state = state
        self.data["prompt"] = {
            "kind": kind,
            "body": body,
            "label": label,
            "section": section,
            "footer": footer,
            "items": items,
        }
        self.data["opts"] = [[o.value, o.title, *o.aliases] for o in options]
        if push:
            stack = list(self.data.get("stack", []))
            stack.append([state, arg])
            self.data["stack"] = stack[-MAX_STACK:]
        self.send_prompt()

    def send_prompt(self) -> None:
        """(Re)send the current prompt as stored, with the same ids, so older taps stay valid."""
        p = self.data.get("prompt")
        if not p:
            return
        out = self.ctx.outbox
        if p["kind"] == "buttons":
            buttons = [Button(i, title) for i, title, _ in p["items"]]
            out.buttons(self.patient, p["body"], buttons, footer=p.get("footer", ""))
        elif p["kind"] == "list":
            rows = [Row(i, title, desc) for i, title, desc in p["items"]]
            out.list(
                self.patient,
                p["body"],
                p["label"],
                [(p["section"], rows)],
                footer=p.get("footer", ""),
            )
        else:
            out.text(self.patient, p["body"])

    @property
    def options(self) -> list[list[str]]:
        return list(self.data.get("opts") or [])

    @property
    def expects_text(self) -> bool:
        """True when the current prompt asks for free text (a name, a text intake answer)."""
        return (self.data.get("prompt") or {}).get("kind") == "text"

    def offered(self, value: str) -> bool:
        """True when `value` is one of the current prompt's options."""
        return any(opt[0] == value for opt in self.options)
