"""Command line: ``python -m kpi_alerts {migrate,create-alert,list-alerts,history,prune-results}``.

The database is ``--db URL`` or the ``kpi_alerts_db`` Airflow connection
(``AIRFLOW_CONN_KPI_ALERTS_DB``). Bad input exits with status 2 and one readable line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from kpi_alerts.errors import AlertValidationError
from kpi_alerts.ledger.database import connect, resolve_db_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kpi_alerts", description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="PostgreSQL URL (default: the kpi_alerts_db Airflow connection)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending schema migrations (idempotent)")
    create = commands.add_parser("create-alert", help="create an alert from a JSON file ('-' for stdin)")
    create.add_argument("file", help="JSON alert spec (see README)")
    create.add_argument(
        "--check-cube",
        action="store_true",
        help="also check the query's members against Cube's /v1/meta (cube_default)",
    )
    listing = commands.add_parser("list-alerts", help="list alerts with their next run")
    listing.add_argument("--organization", type=int)
    history = commands.add_parser("history", help="an alert's recent ledger rows")
    history.add_argument("alert_id", type=int)
    history.add_argument("--limit", type=int, default=20)
    prune = commands.add_parser("prune-results", help="delete finished ledger rows older than --days")
    prune.add_argument("--days", type=_positive_int, default=90)
    args = parser.parse_args(argv)

    try:
        return _run(args)
    except AlertValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of days, not {text[:40]!r}")
    return int(text)


def _run(args: argparse.Namespace) -> int:
    url = resolve_db_url(args.db)
    if args.command == "migrate":
        from kpi_alerts.ledger.migrations import migrate

        applied = migrate(url)
        print(
            f"applied {len(applied)} migration(s): {', '.join(applied)}"
            if applied
            else "schema is up to date"
        )
        return 0
    with connect(url) as conn:
        if args.command == "create-alert":
            return _create(conn, args)
        if args.command == "list-alerts":
            return _list(conn, args.organization)
        if args.command == "history":
            return _history(conn, args.alert_id, args.limit)
        if args.command == "prune-results":
            from kpi_alerts.ledger.retention import prune_results

            deleted = prune_results(conn, retention=timedelta(days=args.days))
            print(f"deleted {deleted} ledger row(s) older than {args.days} days")
            return 0
    raise AssertionError(args.command)


def _create(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.ledger.alert_store import create_alert

    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AlertValidationError(f"the alert spec is not valid JSON: {exc}") from None
    meta = None
    if args.check_cube:
        from kpi_alerts.hooks.cube import CubeHook

        meta = CubeHook().meta(security_context={"organization_id": raw.get("organization_id")})
    created = create_alert(conn, raw, cube_meta=meta)
    print(
        json.dumps(
            {
                "alert_id": created.alert_id,
                "cron_job_id": created.cron_job_id,
                "job_name": created.job_name,
                "next_run_at": created.next_run_at.isoformat(),
            }
        )
    )
    return 0


def _list(conn: Any, organization_id: int | None) -> int:
    from kpi_alerts.ledger.alert_store import list_alerts

    for alert in list_alerts(conn, organization_id):
        next_run = alert.next_run_at.isoformat() if alert.next_run_at else "on first sight"
        state = "active" if alert.is_active and not alert.master_locked else "paused"
        print(
            f"{alert.alert_id:>6}  org {alert.organization_id:<5} {alert.alert_type:<9} {state:<6} "
            f"next {next_run:<25}  {alert.alert_name}"
        )
    return 0


def _history(conn: Any, alert_id: int, limit: int) -> int:
    from kpi_alerts.ledger import queries

    for row in conn.execute(queries.ALERT_HISTORY, {"alert_id": alert_id, "limit": limit}).fetchall():
        print(
            f"{row['slot']:%Y-%m-%d %H:%M}Z  {row['status']:<13} {row['value'] if row['value'] is not None else '':>12}  "
            f"{row['error'] or row['attachment'] or ''}"
        )
    return 0
