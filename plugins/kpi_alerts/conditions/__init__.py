"""Conditions: thresholds, gating conditions (format and evaluation) and the threshold alert state machine."""
