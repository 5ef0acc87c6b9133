"""The registries a Runtime owns: which reaction handles each event, which ticks run, which hooks.

`clinic_bot.bootstrap` fills one Registry explicitly and in order; nothing registers itself on
import, so reading the bootstrap tells every reaction the app has, and a test can build a runtime
with exactly the reactions it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Handlers, hooks and ticks are plain functions; their argument types live in the layers that
# define them (reactions.context.HandlerContext, models.Appointment, models.Patient), which the
# core must not import.
EventHandler = Callable[[Any, Any], str]
Tick = Callable[[Any], object]
StatusHook = Callable[[Any, Any, str], None]
AppointmentHook = Callable[[Any, Any, Any, str], None]
BulkAppointmentHook = Callable[[Any, list, Any], None]
PatientHook = Callable[[Any, Any, Any], None]


@dataclass
class Registry:
    """Every reaction, tick and hook of one runtime, in the order they were installed."""

    handlers: dict[type, EventHandler] = field(default_factory=dict)
    ticks: list[tuple[str, Tick]] = field(default_factory=list)
    status_hooks: list[StatusHook] = field(default_factory=list)
    appointment_hooks: list[AppointmentHook] = field(default_factory=list)
    # For bulk imports: the same hook's work for many new appointments in one go.
    bulk_created_hooks: dict[AppointmentHook, BulkAppointmentHook] = field(default_factory=dict)
    opt_out_hooks: list[PatientHook] = field(default_factory=list)
    opt_in_hooks: list[PatientHook] = field(default_factory=list)
    warm_ups: list[tuple[str, Tick]] = field(default_factory=list)

    def on_event(self, event_type: type, handler: EventHandler) -> None:
        """Handle every event of this type (one handler per type) with `handler(ctx, event)`."""
        if event_type in self.handlers:
            raise ValueError(f"{event_type.__name__} already has a handler")
        self.handlers[event_type] = handler

    def handler_for(self, event_type: type) -> EventHandler | None:
        """The handler installed for this event type, if any."""
        return self.handlers.get(event_type)

    def every_tick(self, name: str, tick: Tick) -> None:
        """Run `tick(runtime)` on every worker tick, as the scheduler job `name`."""
        if any(existing == name for existing, _ in self.ticks):
            raise ValueError(f"tick {name!r} is installed already")
        self.ticks.append((name, tick))

    def at_worker_start(self, name: str, warm_up: Tick) -> None:
        """Run `warm_up(runtime)` on its own thread when a worker starts, never delaying it."""
        if any(existing == name for existing, _ in self.warm_ups):
            raise ValueError(f"warm-up {name!r} is installed already")
        self.warm_ups.append((name, warm_up))

    def on_status(self, hook: StatusHook) -> None:
        """Call `hook(ctx, event, outcome)` after a status moved one of our messages."""
        self.status_hooks.append(hook)

    def on_appointment_change(
        self, hook: AppointmentHook, *, bulk: BulkAppointmentHook | None = None
    ) -> None:
        """Call `hook(session, appointment, now, change)` in the transaction of every change.

        `bulk(session, appointments, now)`, when given, does the hook's "created" work for many
        new appointments at once (calendar imports); it must leave the same rows behind. It gets
        objects with the appointment's columns as attributes, not necessarily ORM instances.
        """
        self.appointment_hooks.append(hook)
        if bulk is not None:
            self.bulk_created_hooks[hook] = bulk

    def on_opt_out(self, hook: PatientHook) -> None:
        """Call `hook(session, patient, now)` in the transaction that opts a patient out."""
        self.opt_out_hooks.append(hook)

    def on_opt_in(self, hook: PatientHook) -> None:
        """Call `hook(session, patient, now)` in the transaction that opts a patient back in."""
        self.opt_in_hooks.append(hook)

    def describe(self) -> list[str]:
        """One line per installed reaction, tick and hook, in order (for docs and debugging)."""
        lines = [f"event {t.__name__} -> {_name(h)}" for t, h in self.handlers.items()]
        lines += [f"tick {name} -> {_name(fn)}" for name, fn in self.ticks]
        lines += [f"at worker start {name} -> {_name(fn)}" for name, fn in self.warm_ups]
        for label, hooks in (
            ("status", self.status_hooks),
            ("appointment change", self.appointment_hooks),
            ("opt-out", self.opt_out_hooks),
            ("opt-in", self.opt_in_hooks),
        ):
            lines += [f"on {label} -> {_name(h)}" for h in hooks]
        return lines


def _name(fn) -> str:
    return f"{fn.__module__}.{getattr(fn, '__qualname__', repr(fn))}"
