"""Benchmarks: run a module with ``python -m bench.<name>`` from the repo root."""
