"""Airflow hooks: thin shells that read Airflow connections and hand them to plain-Python clients."""

from __future__ import annotations
