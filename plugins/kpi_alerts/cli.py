"""Command line: ``python -m kpi_alerts COMMAND`` — the alert lifecycle and the ledger, for operators.

The database is ``--db URL`` (before or after the command) or the ``kpi_alerts_db`` Airflow connection
(``AIRFLOW_CONN_KPI_ALERTS_DB``). Each change is one transaction, recorded in ``kpi_alert_events``.
Bad input or an unknown alert exits with status 2 and one readable line on stderr; nothing is written.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kpi_alerts.errors import AlertValidationError, KpiAlertError, RetryRefused
from kpi_alerts.hooks.db_url import resolve_db_url
from kpi_alerts.ledger.database import connect, describe_database_error
from kpi_alerts.ledger.retention import MAX_RETENTION_DAYS
from kpi_alerts.redaction import redact_url
from kpi_alerts.settings import CUBE_CONN_ID, RETENTION_DAYS, SMTP_CONN_ID
from kpi_alerts.vocabulary import AlertType


def build_parser() -> argparse.ArgumentParser:
    # Global options live on a parent parser too, so `--db URL` works before or after the command.
    globals_ = argparse.ArgumentParser(add_help=False)
    globals_.add_argument(
        "--db",
        default=argparse.SUPPRESS,
        help="PostgreSQL URL (default: the kpi_alerts_db Airflow connection)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m kpi_alerts", description=__doc__.splitlines()[0], parents=[globals_]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_, description=help_, parents=[globals_])

    for add_commands in (_setup_commands, _change_commands, _sending_commands, _reading_commands):
        add_commands(command)
    return parser


Command = Callable[[str, str], argparse.ArgumentParser]


def _setup_commands(command: Command) -> None:
    migrate = command(
        "migrate",
        "apply pending schema migrations, all or nothing (idempotent); a database shape it cannot adopt "
        "is refused with one line and exit 2, nothing changed",
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help="print what it would do (adopt / create / refuse, per table), change nothing",
    )
    doctor = command(
        "doctor",
        "check connections (DB, Cube, SMTP), migrations, claims past their lease, overdue alerts and "
        "the last 24 h's failures; exit 1 when something needs a person",
    )
    doctor.add_argument("--json", action="store_true", help="print JSON instead of text")


def _change_commands(command: Command) -> None:
    create = command("create-alert", "create an alert from a JSON spec file ('-' for stdin)")
    create.add_argument("file", help="JSON alert spec (see README)")
    update = command("update-alert", "change an alert: FILE holds the fields to change (JSON merge patch)")
    update.add_argument("alert_id", type=_alert_id)
    update.add_argument("file", help="JSON object with the fields to change ('-' for stdin)")
    for sub in (create, update):
        sub.add_argument(
            "--check-cube",
            action="store_true",
            help="also check the query's members against Cube's /v1/meta (cube_default)",
        )
    delete = command("delete-alert", "delete an alert (its ledger rows are kept for audit)")
    delete.add_argument("alert_id", type=_alert_id)
    for name, verb in (("pause", "pause"), ("resume", "resume")):
        sub = command(
            name,
            f"{verb} one alert, an organization's alerts or all of them"
            + (" (no backlog is sent: the next run is the next slot after now)" if name == "resume" else ""),
        )
        which = sub.add_mutually_exclusive_group(required=True)
        which.add_argument("alert_id", type=_alert_id, nargs="?")
        which.add_argument("--organization", type=_alert_id, metavar="ORG")
        which.add_argument("--all", action="store_true", help="every KPI alert")
    snooze = command(
        "snooze",
        "snooze one alert until a time: nothing due before it is sent, then it resumes by itself (no backlog)",
    )
    snooze.add_argument("alert_id", type=_alert_id)
    until = snooze.add_mutually_exclusive_group(required=True)
    until.add_argument(
        "--until",
        type=_slot,
        help="ISO date and time with its offset, e.g. '2027-01-04T09:00+01:00' (no offset: UTC)",
    )
    until.add_argument("--off", action="store_true", help="end the snooze now")
    quiet = command(
        "quiet-hours",
        "an organization's quiet hours in its timezone (every alert of it holds its messages inside them)",
    )
    quiet.add_argument("--organization", type=_alert_id, metavar="ORG", required=True)
    window = quiet.add_mutually_exclusive_group(required=True)
    window.add_argument("--from", dest="start", metavar="HH:MM", help="start, e.g. 22:00")
    window.add_argument("--off", action="store_true", help="remove the organization's quiet hours")
    quiet.add_argument("--to", dest="end", metavar="HH:MM", help="end, e.g. 07:00 (earlier: the next day)")
    quiet.add_argument("--timezone", help="IANA timezone, e.g. Europe/Berlin")
    quiet.add_argument("--days", help="weekdays a window starts on, 0 = Sunday: e.g. 1,2,3,4,5")


def _sending_commands(command: Command) -> None:
    test = command("test-send", "send the alert's message, marked as a test, to one address only")
    test.add_argument("alert_id", type=_alert_id)
    test.add_argument("--to", required=True, metavar="ADDRESS")
    preview = command("preview", "write the alert's message (.eml) and attachment to a folder; send nothing")
    preview.add_argument("alert_id", type=_alert_id)
    preview.add_argument("--out", required=True, type=Path, metavar="DIR")
    retry = command(
        "retry",
        "attempt a failed slot again (as clearing its task instance does); a sent slot is never resent",
    )
    retry.add_argument("alert_id", type=_alert_id)
    retry.add_argument(
        "slot", type=_slot, help="the slot's scheduled time as `history` prints it, e.g. '2026-12-07 17:05Z'"
    )
    retry.add_argument(
        "--replay",
        action="store_true",
        help="also resend a delivery_unknown slot (its message may have been delivered: check first)",
    )


def _reading_commands(command: Command) -> None:
    runs = command(
        "next-runs",
        "a schedule in words and its next runs, from a JSON file (a schedule, an alert spec, or a list of "
        '{"said": ..., "schedule": ...}); needs no database',
    )
    runs.add_argument("file", help="JSON file ('-' for stdin)")
    runs.add_argument("--after", type=_slot, help="start after this instant (default: now)")
    runs.add_argument("--count", type=_positive_int, default=5)
    show = command("show", "an alert's definition, next five runs, state and last results")
    show.add_argument("alert_id", type=_alert_id)
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing = command("list-alerts", "list alerts with their next run, state and last result")
    listing.add_argument("--organization", type=_alert_id, metavar="ORG")
    listing.add_argument("--type", choices=[t.value for t in AlertType], dest="alert_type")
    listing.add_argument("--paused", action="store_true", help="only paused alerts")
    history = command("history", "an alert's recent ledger rows (also for a deleted alert)")
    history.add_argument("alert_id", type=_alert_id)
    history.add_argument("--limit", type=int, default=20)
    domains = command(
        "recipient-domains",
        "show or set an organization's recipient domain allow-list (recipients, owners, test sends)",
    )
    domains.add_argument("organization", type=_alert_id, metavar="ORG")
    domains.add_argument(
        "domains", nargs="*", metavar="DOMAIN", help="e.g. example.com (subdomains included)"
    )
    domains.add_argument("--clear", action="store_true", help="remove the list: any domain is allowed")
    prune = command("prune-results", "delete finished ledger rows older than --days")
    prune.add_argument("--days", type=_retention_days, default=int(RETENTION_DAYS.value()))


def _alert_id(text: str) -> int:
    """An alert id as PostgreSQL stores it (bigint): a positive whole number below 2**63."""
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise argparse.ArgumentTypeError(f"expected an alert id (a positive whole number), not {text[:40]!r}")
    return int(text)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of days, not {text[:40]!r}")
    return int(text)


def _retention_days(text: str) -> int:
    days = _positive_int(text)
    if days > MAX_RETENTION_DAYS:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_RETENTION_DAYS:,} days (100 years) of retention, not {text[:40]!r}"
        )
    return days


def _slot(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected the slot as an ISO date and time, e.g. '2026-12-07 17:05Z', not {text[:40]!r}"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value  # no offset: UTC, as history prints


def main(argv: list[str] | None = None) -> int:
    import psycopg

    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (AlertValidationError, LookupError, RetryRefused) as exc:
        print(f"error: {_one_line(_message(exc))}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:  # unreachable --db, wrong password, database gone
        print(f"error: cannot use the database: {_one_line(redact_url(str(exc)))}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:  # read-only database, a constraint, ... : one line, not a traceback
        print(f"error: {_one_line(describe_database_error(exc))}", file=sys.stderr)
        return 1
    except KpiAlertError as exc:  # Cube or SMTP refused a test send, ...
        print(f"error: {_one_line(redact_url(str(exc)))}", file=sys.stderr)
        return 1


def _migrate(url: str, *, check_only: bool) -> int:
    from kpi_alerts.ledger.migrations import MigrationRefused, check, migrate

    try:
        if check_only:
            print("\n".join(check(url).lines()))
            return 0
        applied = migrate(url)
    except MigrationRefused as refused:
        print(f"refused, nothing changed: {_one_line(refused, limit=500)}", file=sys.stderr)
        return 2
    print(f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def _message(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


#: An error line is one line of at most this many characters (hostile input is never echoed whole).
MAX_ERROR_CHARS = 300


def _one_line(text: object, limit: int = MAX_ERROR_CHARS) -> str:
    """Control characters (newlines, ESC, bidi overrides, ...) shown as spaces, at most ``limit``
    characters."""
    shown = "".join(" " if _is_control(ch) else ch for ch in str(text)[: limit * 2])
    shown = " ".join(shown.split())
    return shown if len(shown) <= limit else shown[: limit - 1] + "\u2026"


def _is_control(ch: str) -> bool:
    import unicodedata

    return unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"}


def _run(args: argparse.Namespace) -> int:
    if args.command == "next-runs":
        return _next_runs(args)
    url = resolve_db_url(getattr(args, "db", None))
    if args.command == "migrate":
        return _migrate(url, check_only=args.check)
    if args.command == "doctor":
        from kpi_alerts.doctor import diagnose

        report = diagnose(url)
        print(report.as_json() if args.json else report.text())
        return 1 if report.needs_a_person else 0
    handlers = {
        "create-alert": _create,
        "update-alert": _update,
        "delete-alert": _delete,
        "pause": _pause,
        "resume": _pause,
        "snooze": _snooze,
        "quiet-hours": _quiet_hours,
        "test-send": _test_send,
        "retry": _retry,
        "preview": _preview,
        "show": _show,
        "list-alerts": _list,
        "history": _history,
        "prune-results": _prune,
        "recipient-domains": _recipient_domains,
    }
    with connect(url) as conn:
        return handlers[args.command](conn, args)


def actor() -> str:
    """Who is changing alerts, as recorded in kpi_alert_events."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (e.g. a container without /etc/passwd entry)
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


#: An alert spec is a few KB; a larger file (or /dev/zero) is refused before it is read whole.
MAX_SPEC_BYTES = 1_048_576


def _read_json(file: str, what: str) -> Any:
    shown = _one_line(repr(file), 120)
    try:
        if file == "-":
            data = sys.stdin.buffer.read(MAX_SPEC_BYTES + 1)
        else:
            with Path(file).open("rb") as fh:
                data = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise AlertValidationError(f"cannot read {what} {shown}: {exc.strerror or exc}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise AlertValidationError(f"the {what} {shown} is larger than {MAX_SPEC_BYTES // 1024} KB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AlertValidationError(f"the {what} {shown} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise AlertValidationError(f"the {what} is not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise AlertValidationError(f"the {what} is not valid JSON: {exc}") from None


def _cube_meta(args: argparse.Namespace, organization_id: Any) -> Any:
    if not args.check_cube:
        return None
    from kpi_alerts.hooks.cube import CubeHook

    return CubeHook().meta(security_context={"organization_id": organization_id})


def _create(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.ledger.alert_store import create_alert

    raw = _read_json(args.file, "alert spec")
    if not isinstance(raw, dict):
        raise AlertValidationError("the alert spec must be a JSON object")
    created = create_alert(conn, raw, cube_meta=_cube_meta(args, raw.get("organization_id")), actor=actor())
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


def _update(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.ledger.alert_changes import update_alert
    from kpi_alerts.ledger.alert_store import load_alert

    patch = _read_json(args.file, "update")
    if not isinstance(patch, dict):
        raise AlertValidationError("the update must be a JSON object with the fields to change")
    current = load_alert(conn, args.alert_id)
    meta = _cube_meta(args, current.organization_id if current else None)
    updated = update_alert(conn, args.alert_id, patch, cube_meta=meta, actor=actor())
    alert = updated.alert
    print(
        f"alert {alert.alert_id} updated: {', '.join(updated.changed) or 'nothing changed'}"
        + ("; threshold state reset to OK" if updated.state_reset else "")
        + f"; next run {_when(alert.next_run_at)}"
    )
    if updated.in_flight:
        print(f"note: {updated.in_flight}")
    return 0


def _delete(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.ledger.alert_changes import delete_alert

    deleted = delete_alert(conn, args.alert_id, actor=actor())
    print(
        f"alert {deleted.alert_id} deleted; its {deleted.ledger_rows_kept} ledger row(s) are kept "
        f"(`history {deleted.alert_id}` still shows them)"
    )
    return 0


def _pause(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.ledger import alert_changes

    pausing = args.command == "pause"
    if args.alert_id is not None:
        change = (alert_changes.pause_alert if pausing else alert_changes.resume_alert)(
            conn, args.alert_id, actor=actor()
        )
        if change.unchanged:
            print(f"alert {args.alert_id} was already {'paused' if pausing else 'active'}")
            return 0
    else:
        many = alert_changes.pause_alerts if pausing else alert_changes.resume_alerts
        change = many(conn, organization_id=args.organization, actor=actor())
    ids = ", ".join(str(i) for i in change.changed) or "none"
    print(f"{'paused' if pausing else 'resumed'} {len(change.changed)} alert(s): {ids}")
    if not pausing and change.changed:
        print("each runs again at its next slot after now; slots missed while paused are not sent")
    return 0


def _snooze(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.ledger import alert_changes

    change = alert_changes.snooze_alert(conn, args.alert_id, None if args.off else args.until, actor=actor())
    if args.off:
        print(f"alert {args.alert_id} is no longer snoozed")
    else:
        print(f"alert {args.alert_id} snoozed until {args.until.isoformat()}; nothing due before it is sent")
    if change.next_run_at is not None:
        print(f"next run {change.next_run_at.isoformat()}")
    return 0


def _quiet_hours(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.ledger.alert_store import set_organization_quiet_hours
    from kpi_alerts.scheduling.cadence import parse_clock
    from kpi_alerts.scheduling.quiet_hours import QuietHours, describe_quiet_hours

    if args.off:
        set_organization_quiet_hours(conn, args.organization, None)
        print(f"organization {args.organization} has no quiet hours")
        return 0
    if args.end is None or args.timezone is None:
        raise AlertValidationError("quiet-hours needs --from, --to and --timezone (or --off)")
    try:
        days = tuple(int(d) for d in args.days.split(",")) if args.days else ()
    except ValueError:
        raise AlertValidationError(
            f"--days must be weekdays 0-6 separated by commas, got {args.days!r}"
        ) from None
    window = QuietHours(
        args.timezone,
        parse_clock(args.start, "quiet_hours.from"),
        parse_clock(args.end, "quiet_hours.to", allow_end_of_day=True),
        days,
    )
    set_organization_quiet_hours(conn, args.organization, window)
    print(f"organization {args.organization}: {describe_quiet_hours(window)}")
    return 0


def _test_send(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.hooks.cube import CubeHook
    from kpi_alerts.hooks.smtp import SmtpMailer
    from kpi_alerts.hooks.variables import trial_settings
    from kpi_alerts.pipeline.trial import send_test_message

    with CubeHook() as source:
        sent = send_test_message(
            conn,
            args.alert_id,
            args.to,
            source=source,
            mailer=SmtpMailer(),
            settings=trial_settings(),
            actor=actor(),
        )
    print(f"test message sent to {sent.to} ({sent.delivery}: {sent.detail})")
    print(f"Subject: {sent.subject}")
    print(f"Now: {sent.verdict}")
    return 0


def _retry(conn: Any, args: argparse.Namespace) -> int:

    from kpi_alerts.delivery.mailers import OutboxMailer
    from kpi_alerts.hooks.cube import CubeHook
    from kpi_alerts.hooks.smtp import SmtpMailer
    from kpi_alerts.hooks.variables import trial_settings, variable_settings
    from kpi_alerts.ledger.claim_terms import Claimant, ClaimSettings
    from kpi_alerts.pipeline.retry import retry_slot

    # The run's own rules: only `production` sends e-mail, anything else writes to the outbox.
    task = variable_settings()
    production = task.production
    # Checked before the claim, so that a missing connection here never records the slot as failed again.
    from kpi_alerts.ledger.alert_changes import AlertNotFound
    from kpi_alerts.ledger.alert_store import load_alert

    if load_alert(conn, args.alert_id) is None:
        raise AlertNotFound(f"alert {args.alert_id} does not exist")
    _require_connections(CUBE_CONN_ID, *([SMTP_CONN_ID] if production else []))
    mailer: Any = SmtpMailer()
    if not production:
        mailer = OutboxMailer(task.outbox)
    settings = replace(
        trial_settings(),
        claimant=Claimant(worker=f"{actor()}:{os.getpid()}", task_instance="cli retry"),
        claim=ClaimSettings(lease=task.claim.lease),
    )
    with CubeHook() as source:
        run = retry_slot(
            conn,
            args.alert_id,
            args.slot,
            source=source,
            mailer=mailer,
            settings=settings,
            replay=args.replay,
        )
    print(f"alert {run.alert_id} slot {run.slot}: {run.status} — {run.detail}")
    return 0


def _require_connections(*conn_ids: str) -> None:
    from airflow.sdk import BaseHook

    for conn_id in conn_ids:
        try:
            BaseHook.get_connection(conn_id)
        except Exception as exc:  # not defined in any secrets backend, or unreadable
            raise RetryRefused(
                f"the Airflow connection {conn_id!r} is not available here ({type(exc).__name__}: {exc}); "
                "nothing was attempted"
            ) from None


def _preview(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.hooks.cube import CubeHook
    from kpi_alerts.hooks.variables import trial_settings
    from kpi_alerts.pipeline.trial import preview

    with CubeHook() as source:
        files = preview(conn, args.alert_id, args.out, source=source, settings=trial_settings())
    print(f"wrote {files.eml}")
    if files.attachment is not None:
        print(f"wrote {files.attachment}")
    print(f"Subject: {files.subject}")
    print(f"Now: {files.verdict}")
    return 0


def _show(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.ledger.alert_views import alert_detail

    detail = alert_detail(conn, args.alert_id, now=datetime.now(UTC))
    if args.json:
        print(json.dumps(detail, indent=2, default=str))
        return 0
    print(
        f"alert {detail['id']}: {detail['alert_name']}  (organization {detail['organization_id']}, {detail['alert_type']})"
    )
    print(f"  status     {detail['status']}")
    print(f"  schedule   {detail['schedule_description']}")
    for quiet in detail["quiet_hours"]:
        print(f"  quiet      {quiet['words']} ({quiet['of']})")
    if detail["snoozed_until"]:
        print(f"  snoozed    until {detail['snoozed_until']}")
    if detail["freshness"]:
        print(f"  fresh data {detail['freshness']}")
    if detail["waiting_for_data"]:
        print(f"  waiting    {detail['waiting_for_data']}")
    if detail["state"] is not None:
        print(f"  state      {detail['state']} (last value {detail['threshold_last_value']})")
        print(f"  rule       {detail['threshold_rule']}")
        if detail["threshold_streak"]:
            print(f"  pending    {detail['threshold_streak']} check(s) in a row toward a change of state")
    print(f"  recipients {', '.join(detail['recipients'])}")
    if detail["owners"]:
        print(f"  owners     {', '.join(detail['owners'])}")
    print(f"  next runs ({detail['timezone']} / UTC):")
    for run in detail["next_runs"]:
        print(f"    {run['words'] or run['local']:<44} {run['utc']}")
    print("  last results:")
    for row in detail["recent_results"] or [{"slot": "-", "status": "no run yet", "error": None}]:
        print(f"    {row['slot']}  {row['status']:<13} {row.get('error') or ''}")
    print("  definition:")
    print("    " + json.dumps(detail["definition"], indent=2, default=str).replace("\n", "\n    "))
    return 0


def _next_runs(args: argparse.Namespace) -> int:
    import functools
    from zoneinfo import ZoneInfo

    from kpi_alerts.alerts.spec import QuietHoursSpec, parse_schedule_spec
    from kpi_alerts.scheduling.quiet_hours import Hold, describe_quiet_hours, next_report_slot
    from kpi_alerts.scheduling.schedule import describe, next_run_after, scheduled_times
    from kpi_alerts.scheduling.wording import run_in_words

    raw = _read_json(args.file, "schedule")
    items = raw if isinstance(raw, list) else [raw]
    after = args.after or datetime.now(UTC)
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise AlertValidationError(f"item {number} must be a JSON object")
        said = item.get("said") if "said" in item else item.get("alert_name")
        schedule = parse_schedule_spec(item.get("schedule", item))
        if said:
            print(f"{number}. {_one_line(said)}")
        print(f"   spec   {json.dumps(item.get('schedule', item))}")
        print(f"   words  {describe(schedule)}")
        runs = scheduled_times(schedule, after, args.count)
        if "schedule" in item and item.get("quiet_hours") is not None:  # an alert spec with quiet hours
            quiet = QuietHoursSpec.model_validate(item["quiet_hours"])
            window = quiet.to_quiet_hours(schedule.timezone)
            window.validate()
            hold = Hold((window,), quiet.reports)
            print(f"   quiet  {describe_quiet_hours(window)}; reports inside them: {quiet.reports}")
            runs, cursor = [], after
            for _ in range(args.count):
                cursor = next_report_slot(functools.partial(next_run_after, schedule), cursor, hold)
                runs.append(cursor)
        for run in runs:
            print(
                f"          {run_in_words(run.astimezone(ZoneInfo(schedule.timezone))):<44} {run:%Y-%m-%d %H:%M}Z"
            )
    return 0


def _when(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "on first sight"


def _prune(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.ledger.retention import prune_results

    deleted = prune_results(conn, retention=timedelta(days=args.days))
    print(f"deleted {deleted} ledger row(s) older than {args.days} days")
    return 0


def _recipient_domains(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.ledger.alert_store import recipient_domains, set_recipient_domains

    org = args.organization
    if args.clear and args.domains:
        raise AlertValidationError("give domains or --clear, not both")
    if args.clear or args.domains:
        with conn.transaction():
            current = set_recipient_domains(conn, org, None if args.clear else args.domains)
    else:
        current = recipient_domains(conn, org)
    shown = ", ".join(current) if current is not None else "any domain (no allow-list)"
    print(f"organization {org} may send to: {shown}")
    return 0


def _list(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.ledger.alert_changes import alert_overview
    from kpi_alerts.ledger.alert_views import alert_summary

    offset, page = 0, 1000
    while True:
        listed, total = alert_overview(
            conn,
            organization_id=args.organization,
            alert_type=args.alert_type,
            paused=True if args.paused else None,
            limit=page,
            offset=offset,
        )
        for alert, last in listed:
            a = alert_summary(alert, last)
            result = f"{last['status']} {last['slot']:%Y-%m-%d %H:%M}Z" if last else "no run yet"
            print(
                f"{a['id']:>6}  org {a['organization_id']:<5} {a['alert_type']:<9} {a['status']:<8} "
                f"next {a['next_run_local'] or 'on first sight':<30} last {result:<30} {a['alert_name']}"
                + (f"  [cannot run: {a['defect']}]" if a["defect"] else "")
            )
        offset += page
        if offset >= total:
            return 0


def _history(conn: Any, args: argparse.Namespace) -> int:
    from kpi_alerts.ledger.alert_changes import alert_history

    rows, total = alert_history(conn, args.alert_id, limit=args.limit)
    for row in rows:
        value = row["value"] if row["value"] is not None else ""
        print(
            f"{row['slot']:%Y-%m-%d %H:%M}Z  {row['status']:<13} {value:>12}  {row['error'] or row['attachment'] or ''}"
        )
        for earlier in row.get("attempt_history") or ():  # attempts that did not finish the slot
            try_ = f", try {earlier['try_number']}" if earlier.get("try_number") is not None else ""
            print(
                f"{'':19}attempt {earlier.get('attempt')}{try_} at {earlier.get('at')}: "
                f"{_one_line(earlier.get('error'), 300)}"
            )
    if total > len(rows):
        print(f"({len(rows)} of {total} rows; --limit N for more)")
    return 0
