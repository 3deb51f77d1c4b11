"""Schedules: when a report fires next (DST-correct, in the alert's timezone)."""
