"""Build the Runtime and install every reaction, tick and hook, by name and in order.

This file is the one place that says what the app does with each event: reading it tells every
reaction, every periodic tick and every hook there is. Nothing registers itself on import, and a
test can build a runtime with exactly the reactions it needs (`build_runtime(..., install=...)`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable

from clinic_bot.core.clock import system_clock
from clinic_bot.core.db import Database
from clinic_bot.core.registry import Registry
from clinic_bot.core.runtime import Runtime
from clinic_bot.delivery.outbox import cancel_pending_on_opt_out
from clinic_bot.domain import events as ev
from clinic_bot.domain.broadcasts import skip_for_patient
from clinic_bot.domain.profile import Profile, load_profile
from clinic_bot.domain.understanding import dates, language
from clinic_bot.domain.waitlist import leave_on_opt_out
from clinic_bot.operations.gateway_timing import TimedWhapiClient, flush_latency
from clinic_bot.operations.logging import log_every_handler
from clinic_bot.reactions import calls, channel, emoji, messages, statuses
from clinic_bot.schedules import broadcasts, retention, waitlist
from clinic_bot.schedules.reminders import followups, plan, tick
from clinic_bot.settings import EXAMPLE_PROFILE, Settings

log = logging.getLogger(__name__)


def install_reactions(registry: Registry) -> None:
    """Event → reaction: one handler per typed event (see domain/events.py)."""
    for patient_writes in (
        ev.TextReceived,
        ev.MediaReceived,
        ev.LocationReceived,
        ev.ContactReceived,
        ev.ButtonTapped,
        ev.ListPicked,
        ev.OtherMessage,
    ):
        registry.on_event(patient_writes, messages.handle_patient_message)
    registry.on_event(ev.ReactionChanged, emoji.handle_reaction)
    registry.on_event(ev.StatusChanged, statuses.handle_status)
    registry.on_event(ev.OwnEcho, statuses.handle_echo)
    registry.on_event(ev.CallReceived, calls.handle_call)
    registry.on_event(ev.ChannelChanged, channel.handle_channel)
    for kept_as_record in (ev.GroupChanged, ev.LabelChanged, ev.ChatChanged):
        registry.on_event(kept_as_record, channel.handle_recorded)
    registry.on_event(ev.Ignored, channel.handle_ignored)


def install_hooks(registry: Registry) -> None:
    """What else happens, in the same transaction, when an appointment, status or opt-in changes."""
    registry.on_appointment_change(plan.plan_reminders, bulk=plan.plan_created_reminders)
    registry.on_status(followups.on_status)
    # STOP: unsent messages first, then reminders, then broadcasts still to reach the patient.
    registry.on_opt_out(cancel_pending_on_opt_out)
    registry.on_opt_out(plan.void_for_patient)
    registry.on_opt_out(skip_for_patient)
    registry.on_opt_out(leave_on_opt_out)
    registry.on_opt_in(plan.replan_for_patient)


def install_ticks(registry: Registry) -> None:
    """Time → reaction: the worker runs these on every tick; each claims its own rows."""
    registry.every_tick("reminders", tick.send_due)
    registry.every_tick("broadcasts", broadcasts.pace)
    registry.every_tick("waitlist", waitlist.tick)
    registry.every_tick("retention", retention.run_daily)
    registry.every_tick("gateway-latency", flush_latency)


def install_warm_ups(registry: Registry) -> None:
    """What a starting worker loads on background threads, so the first patient does not wait."""
    registry.at_worker_start("understanding", warm_up_understanding)


def warm_up_understanding(runtime: Runtime) -> None:
    """Load lingua's language models (1-2 s on first use) and dateparser's language data."""
    languages = runtime.profile.languages
    language.warm_up(languages)
    dates.warm_up(languages)


def install_everything(registry: Registry) -> None:
    """The whole app: every reaction, hook, tick and warm-up."""
    install_reactions(registry)
    install_hooks(registry)
    install_ticks(registry)
    install_warm_ups(registry)
    # Last: one log line per handled event, whichever reactions were installed above.
    log_every_handler(registry)


def build_runtime(
    settings: Settings,
    *,
    clock=None,
    profile: Profile | None = None,
    install: Callable[[Registry], None] = install_everything,
    **db_kw,
) -> Runtime:
    """Open the database, load (or first create) the clinic profile, make the client, install."""
    ensure_profile(settings)
    runtime = Runtime(
        settings=settings,
        db=Database(settings.database_url, **db_kw),
        profile=profile or load_profile(settings.clinic_config),
        client=TimedWhapiClient(settings.whapi_api_url, settings.whapi_token or "sandbox"),
        clock=clock or system_clock,
    )
    install(runtime.registry)
    return runtime


def ensure_profile(settings: Settings) -> bool:
    """Copy the shipped example profile to the configured path when none exists yet."""
    path = settings.clinic_config
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLE_PROFILE, path)
    log.warning("wrote the example clinic profile to %s; edit it for your clinic", path)
    return True
