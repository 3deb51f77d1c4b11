"""``python -m kpi_alerts``: see :mod:`kpi_alerts.cli`."""

from __future__ import annotations

if __name__ == "__main__":
    from kpi_alerts.cli import main

    raise SystemExit(main())
