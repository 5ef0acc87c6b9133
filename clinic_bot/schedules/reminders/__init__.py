"""Reminders as rows: planned with every appointment change, sent by a tick that claims them.

- `plan`: every appointment change (WhatsApp, API, calendar import, staff) keeps the rows of
  the appointment's current version, in the transaction that changed it; STOP voids, START
  plans again.
- `tick`: claims due rows and turns each into one outbox message keyed so that no reminder can
  be sent twice, or a skip with its reason.
- `followups`: a read reminder with no reply plans one follow-up.
- `messages`: the allow-listed texts and buttons.
"""
