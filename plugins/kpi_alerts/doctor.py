"""``python -m kpi_alerts doctor``: is the deployment healthy, and if not, what needs a person?

Checks, in order (a check that cannot run because the database is unreachable is reported as such):

1. the three connections are reachable: ``kpi_alerts_db`` (a query), ``cube_default`` (``/readyz`` and
   a ``/v1/meta`` call, which proves the credentials), ``smtp_default`` (connect, EHLO, NOOP; no mail);
2. the schema migrations are current (none pending);
3. no claim is past its lease (``ledger.health.stale_claims``);
4. no active alert is overdue beyond the misfire window (``kpi_alerts_misfire_minutes``);
5. failures in the last 24 hours, by reason (``failed`` and ``delivery_unknown`` rows).

Exit status 0 when nothing needs a person, 1 when something does (any check failed, or there are
failures in the last 24 hours), 2 for a usage error. Secrets are never printed (URLs are redacted).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kpi_alerts.redaction import redact_url
from kpi_alerts.settings import SMTP_CONN_ID


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    items: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name:<22} {self.detail}"


@dataclass
class Report:
    checks: list[Check]

    @property
    def needs_a_person(self) -> bool:
        return not all(c.ok for c in self.checks)

    def text(self) -> str:
        lines = []
        for check in self.checks:
            lines.append(check.line())
            lines.extend(f"      - {_describe(item)}" for item in check.items[:20])
            if len(check.items) > 20:
                lines.append(f"      ... and {len(check.items) - 20} more")
        lines.append("needs a person: " + ("yes" if self.needs_a_person else "no"))
        return "\n".join(lines)

    def as_json(self) -> str:
        return json.dumps(
            {"needs_a_person": self.needs_a_person, "checks": [asdict(c) for c in self.checks]}, default=str
        )


def _describe(item: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in item.items() if v is not None)


def _guard(name: str, probe: Callable[[], Check]) -> Check:
    try:
        return probe()
    except Exception as exc:  # a check never crashes the doctor: it is reported as failed
        return Check(name, False, f"{type(exc).__name__}: {redact_url(str(exc)).splitlines()[0][:300]}")


def check_database(db_url: str) -> Check:
    from kpi_alerts.ledger.database import connect

    def probe() -> Check:
        with connect(db_url) as conn:
            row = conn.execute("SELECT current_setting('server_version') AS version").fetchone()
        version = row["version"] if row else "?"
        return Check("database", True, f"{redact_url(db_url)} reachable (PostgreSQL {version})")

    return _guard("database", probe)


def check_cube() -> Check:
    def probe() -> Check:
        from kpi_alerts.hooks.cube import CubeHook

        with CubeHook() as hook:
            ok, message = hook.test_connection()
        return Check("cube", ok, redact_url(message))

    return _guard("cube", probe)


def check_smtp() -> Check:
    def probe() -> Check:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        from kpi_alerts.delivery.mailers import RELAY_CODES, relay_problem

        try:
            with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
                hook.get_conn()
                client: Any = hook._smtp_client
                code, _ = client.noop()
                # MAIL FROM (then RSET; no message) shows a relay that wants AUTH or TLS first (530)
                client.ehlo_or_helo_if_needed()
                mail_code, mail_reply = client.mail("")
                client.rset()
                host = hook.host if hasattr(hook, "host") else "the SMTP server"
        except Exception as exc:
            problem = relay_problem(exc)
            if problem is None:
                raise
            return Check("smtp", False, str(problem)[:300])
        if mail_code in RELAY_CODES:
            reply = mail_reply.decode(errors="replace")
            return Check(
                "smtp", False, f"{host} refuses mail from this deployment: {mail_code} {reply}"[:300]
            )
        ok = 200 <= code < 300
        return Check("smtp", ok, f"{host} answered NOOP with {code}")

    return _guard("smtp", probe)


def check_migrations(db_url: str) -> Check:
    def probe() -> Check:
        from kpi_alerts.ledger.migrations import pending_migrations

        pending = pending_migrations(db_url)
        if pending:
            return Check(
                "migrations",
                False,
                f"{len(pending)} pending: run `python -m kpi_alerts migrate`",
                [{"migration": m} for m in pending],
            )
        return Check("migrations", True, "schema is current")

    return _guard("migrations", probe)


def check_ledger(db_url: str, *, now: datetime, misfire_window: timedelta) -> list[Check]:
    from kpi_alerts.ledger import health
    from kpi_alerts.ledger.database import connect

    with connect(db_url) as conn:
        stale = _guard("claims past lease", lambda: _stale(health.stale_claims(conn, now=now)))
        overdue = _guard(
            "overdue alerts",
            lambda: _overdue(
                health.overdue_alerts(conn, now=now, misfire_window=misfire_window), misfire_window
            ),
        )
        failures = _guard("failures (24 h)", lambda: _failures(health.recent_failures(conn, now=now)))
    return [stale, overdue, failures]


def _stale(claims: list[Any]) -> Check:
    if not claims:
        return Check("claims past lease", True, "none")
    return Check(
        "claims past lease",
        False,
        f"{len(claims)} slot(s) held by a worker whose lease expired (is the kpi_alerts DAG running? "
        "a later run takes them over)",
        [
            {
                "alert": c.alert_id,
                "slot": c.slot.isoformat(),
                "status": c.status,
                "claimed_by": c.claimed_by,
                "lease_expired": c.lease_expires_at.isoformat(),
                "run": c.dag_run_id,
                "task": c.task_instance,
            }
            for c in claims
        ],
    )


def _overdue(alerts: list[Any], window: timedelta) -> Check:
    minutes = int(window.total_seconds() // 60)
    if not alerts:
        return Check("overdue alerts", True, f"none beyond the {minutes}-minute misfire window")
    return Check(
        "overdue alerts",
        False,
        f"{len(alerts)} active alert(s) overdue beyond the {minutes}-minute misfire window "
        "(scheduler down? DAG paused?): their slots will be recorded as missed",
        [{"alert": a.alert_id, "name": a.alert_name, "due": a.next_run_at.isoformat()} for a in alerts],
    )


def _failures(groups: list[Any]) -> Check:
    if not groups:
        return Check("failures (24 h)", True, "none")
    total = sum(g.count for g in groups)
    return Check(
        "failures (24 h)",
        False,
        f"{total} failed or unconfirmed slot(s) in the last 24 hours, {len(groups)} reason(s)",
        [
            {
                "status": g.status,
                "count": g.count,
                "reason": g.reason,
                "last": g.last_at.isoformat(),
                "alerts": ",".join(map(str, g.alert_ids)),
            }
            for g in groups
        ],
    )


def diagnose(db_url: str, *, now: datetime | None = None, misfire_window: timedelta | None = None) -> Report:
    """Run every check against the alerts database ``db_url`` and the Airflow connections."""
    from kpi_alerts.hooks.variables import variable_settings

    now = now or datetime.now(UTC)
    if misfire_window is None:
        misfire_window = variable_settings().claim.misfire_window
    database = check_database(db_url)
    checks = [database, check_cube(), check_smtp()]
    if database.ok:
        checks.append(check_migrations(db_url))
        checks.extend(check_ledger(db_url, now=now, misfire_window=misfire_window))
    else:
        checks.extend(
            Check(name, False, "not checked: the database is unreachable")
            for name in ("migrations", "claims past lease", "overdue alerts", "failures (24 h)")
        )
    return Report(checks)
