"""Operator tools: doctor, retention, data-subject requests, JSON logs and metrics.

Nothing is imported here on purpose: the web layer imports `metrics` and `health` only, and must
not pull in the doctor's Whapi client through this package.
"""
