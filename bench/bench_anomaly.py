"""What an anomaly check costs next to a plain threshold check: one alert's check, end to end.

Run from the repository root (``make bench`` runs it with the defaults)::

    PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_anomaly [--n 30] [--rounds 5]

The issue's target: an anomaly check costs at most 3x a plain threshold check, measured in the same run.

What it does:

1. seeds nine weeks of daily orders (weekly seasonal, the last Monday a drop to 2,710) for one
   organization of the devstack analytics database, and waits until the devstack Cube serves them;
2. makes four threshold alerts on the same query (daily revenue, last 7 days) in a fresh alerts
   database ``kpi_alerts_bench_anomaly``, two pairs:

   - *quiet* — nothing is sent: ``ABOVE_EXPECTED_RANGE`` (the drop is not above its band) against the
     same-run baseline ``GREATER_THAN 1e12``;
   - *notice* — a notice is sent at every check (re-arm 0): ``OUTSIDE_EXPECTED_RANGE`` against
     ``GREATER_THAN 0``; the anomaly's e-mail carries the chart with its band;

3. checks each alert ``--n`` times per round (hourly slots, interleaved: anomaly, plain, anomaly,
   plain, so all see the same server state) through ``process_alert`` — the claim, the Cube query
   (and the anomaly's history query: one more per check), the check, the e-mail to an SMTP server of
   its own and the ledger row — after a warm-up, for ``--rounds`` rounds.

Printed: per round and pair, the median wall time of a check of each kind and their ratio; then per
pair the median over rounds, the ratios' spread (min-max over rounds) and whether the worst round
meets 3x; and the command. The seeded orders and the benchmark's database are removed at the end.
"""

from __future__ import annotations

import argparse
import smtplib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "plugins") not in sys.path:
    sys.path.insert(0, str(ROOT / "plugins"))

from devstack.mail import MailCatcher  # noqa: E402
from devstack.postgres import ensure_database  # noqa: E402
from devstack.stack import up  # noqa: E402
from kpi_alerts.cube.client import CubeClient  # noqa: E402
from kpi_alerts.delivery.mailers import SessionMailer  # noqa: E402
from kpi_alerts.ledger.alert_store import create_alert  # noqa: E402
from kpi_alerts.ledger.claim_terms import Claimant  # noqa: E402
from kpi_alerts.ledger.database import connect  # noqa: E402
from kpi_alerts.ledger.migrations import migrate  # noqa: E402
from kpi_alerts.pipeline.alert_run import process_alert  # noqa: E402
from kpi_alerts.pipeline.inputs import RunSettings  # noqa: E402

ALERTS_DB = "kpi_alerts_bench_anomaly"
ORG = 7381  # an organization of its own in the analytics database (the tests use others)
CHECKED = date(2026, 11, 30)  # a Monday: the latest complete day at every slot
FIRST_SLOT = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
WEEKS = 8
TARGET = 3.0
QUERY = {
    "measures": ["orders.total_amount"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-11-24", "2026-11-30"]}
    ],
}
#: pair -> (anomaly threshold, plain threshold): the same data, the same outcome for both kinds.
PAIRS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "quiet": (
        {"condition": "ABOVE_EXPECTED_RANGE", "threshold_value": "3"},
        {"condition": "GREATER_THAN", "threshold_value": "1000000000000"},
    ),
    "notice": (
        {"condition": "OUTSIDE_EXPECTED_RANGE", "threshold_value": "3", "rearm_minutes": 0},
        {"condition": "GREATER_THAN", "threshold_value": "0", "rearm_minutes": 0},
    ),
}


def amount(day: date) -> Decimal:
    """Weekly seasonal: Mondays about 4,200 USD, other days 900; the checked Monday drops to 2,710."""
    if day == CHECKED:
        return Decimal(2710)
    return Decimal(4200 + 37 * (day.toordinal() % 5)) if day.weekday() == 0 else Decimal(900)


def seed(analytics_url: str, cube: CubeClient) -> None:
    """One order a day for nine weeks up to CHECKED; returns once Cube serves the checked week."""
    days = [CHECKED - timedelta(days=n) for n in range(7 * (WEEKS + 1))]
    with psycopg.connect(analytics_url, autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))
        generation = int(time.time()) % 1000  # new ids each run: Cube's refresh key (count, max id) moves
        rows = [
            (ORG * 1_000_000 + generation * 1000 + i, ORG, datetime(d.year, d.month, d.day, 12, tzinfo=UTC),
             amount(d))
            for i, d in enumerate(days)
        ]  # fmt: skip
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO orders VALUES (%s, %s, %s, 'completed', 'books', %s)", rows)
    deadline = time.monotonic() + 60
    while True:
        data = cube.load(QUERY, security_context={"organization_id": ORG}, timezone="UTC")
        values = [r["orders.total_amount"] for r in data.rows]
        if len(values) == 7 and amount(CHECKED) in values:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"Cube did not serve the seeded week within 60 s: {values}")
        time.sleep(0.2)  # polling Cube's refresh: the condition above is what ends the wait


def unseed(analytics_url: str) -> None:
    with psycopg.connect(analytics_url, autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))


def make_alerts(url: str) -> dict[str, tuple[int, int]]:
    """Pair name -> (anomaly alert id, plain alert id)."""
    out = {}
    with connect(url) as db:
        for pair, thresholds in PAIRS.items():
            ids = []
            for kind, threshold in zip(("anomaly", "plain"), thresholds, strict=True):
                spec = {
                    "organization_id": ORG,
                    "alert_name": f"Revenue {pair} {kind}",
                    "recipients": ["ops@org7381.example.com"],
                    "cube_query": QUERY,
                    "threshold": threshold,
                }
                ids.append(create_alert(db, spec, now=FIRST_SLOT).alert_id)
            out[pair] = (ids[0], ids[1])
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=30, help="checks of each alert per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="checks of each alert before timing")
    args = parser.parse_args(argv)

    stack = up(with_mail=False)
    alerts_url = ensure_database(stack.pg, ALERTS_DB, recreate=True)
    migrate(alerts_url)
    alerts = make_alerts(alerts_url)
    analytics_url = stack.pg.url("analytics")
    slots = iter(FIRST_SLOT + timedelta(hours=h) for h in range(10**6))
    samples: dict[str, list[tuple[list[float], list[float]]]] = {pair: [] for pair in PAIRS}
    sent: dict[str, int] = {}

    with tempfile.TemporaryDirectory(prefix="kpi-bench-anomaly-") as folder, MailCatcher(Path(folder)) as mail, \
            CubeClient(stack.cube_url, api_secret=stack.cube_secret) as cube, connect(alerts_url) as db:  # fmt: skip
        mailer = SessionMailer(lambda: smtplib.SMTP("127.0.0.1", mail.port, timeout=30))
        try:
            seed(analytics_url, cube)

            def timed(alert_id: int, slot: datetime) -> float:
                settings = RunSettings(
                    logical_time=slot + timedelta(minutes=5),
                    final_attempt=True,
                    claimant=Claimant(dag_run_id=f"bench-anomaly-{slot:%Y%m%d%H}", try_number=1),
                )
                start = time.perf_counter()
                process_alert(db, alert_id, source=cube, mailer=mailer, settings=settings)
                return (time.perf_counter() - start) * 1000

            def one_round(n: int, record: Callable[[str, list[float], list[float]], None] | None) -> None:
                times: dict[str, tuple[list[float], list[float]]] = {p: ([], []) for p in PAIRS}
                for _ in range(n):
                    slot = next(slots)
                    for pair, (anomaly_id, plain_id) in alerts.items():
                        times[pair][0].append(timed(anomaly_id, slot))
                        times[pair][1].append(timed(plain_id, slot))
                if record is not None:
                    for pair, (anomaly_ms, plain_ms) in times.items():
                        record(pair, anomaly_ms, plain_ms)

            one_round(args.warmup, None)
            for _ in range(args.rounds):
                one_round(args.n, lambda pair, a, p: samples[pair].append((a, p)))
            statuses = db.execute(
                "SELECT a.alert_name, r.status, count(*) AS n FROM cron_job_results r "
                "JOIN kpi_alerts a ON a.id = r.kpi_alert_id GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall()
            sent = {f"{s['alert_name']}: {s['status']}": s["n"] for s in statuses}
            received = len(mail.messages())
        finally:
            unseed(analytics_url)
    with psycopg.connect(stack.pg.url(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {ALERTS_DB}")

    command = (
        f"PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_anomaly --n {args.n} --rounds {args.rounds}"
    )
    print(f"command: {command}")
    print(
        f"one check = process_alert end to end (claim, Cube, check, e-mail if any, ledger); Cube at "
        f"{stack.cube_url}; {args.n} checks of each alert per round, interleaved, after {args.warmup} warm-up"
    )
    print(f"ledger: {sent}; messages received: {received}")
    worst = 0.0
    for pair, rounds in samples.items():
        anomaly_name, plain_name = PAIRS[pair][0]["condition"], PAIRS[pair][1]["condition"]
        print(f"\n{pair}: {anomaly_name} vs the baseline {plain_name} {PAIRS[pair][1]['threshold_value']}")
        ratios = []
        for k, (anomaly_ms, plain_ms) in enumerate(rounds, start=1):
            a, p = statistics.median(anomaly_ms), statistics.median(plain_ms)
            ratios.append(a / p)
            print(f"  round {k}: anomaly median {a:6.2f} ms   plain median {p:6.2f} ms   ratio {a / p:4.2f}")
        all_a = [ms for a, _ in rounds for ms in a]
        all_p = [ms for _, p in rounds for ms in p]
        a, p = statistics.median(all_a), statistics.median(all_p)
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(
            f"  all rounds: anomaly median {a:6.2f} ms (p95 {p95(all_a):6.2f})   plain median {p:6.2f} ms "
            f"(p95 {p95(all_p):6.2f})   ratio {a / p:.2f}   spread over rounds {spread}   "
            f"extra per check {a - p:+.2f} ms"
        )
        worst = max(worst, max(ratios))
    verdict = "meets" if worst <= TARGET else "MISSES"
    print(f"\nworst round's ratio {worst:.2f}: {verdict} the target of at most {TARGET:g}x a plain check")
    return 0


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
