"""Calendars: .ics invitations and feeds out, .ics files in."""
