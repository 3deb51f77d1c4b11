"""Anomaly conditions through the real pipeline: seeded daily histories in the analytics database, the
real Cube server, real SMTP and the real ledger.

Each history (flat, weekly seasonal, trending, with a spike, with a drop, too short) is one
organization's orders; the decision each run records is compared with a band computed here from SQL
rows with the standard library (not pandas), and the e-mail's numbers are read back.
"""

from __future__ import annotations

import io
import itertools
import re
import statistics
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from devstack.cube import CubeServer
from devstack.mail import MailCatcher
from kpi_alerts.cube.client import CubeClient
from kpi_alerts.hooks.smtp import SmtpMailer
from kpi_alerts.ledger.alert_store import create_alert, load_alert
from kpi_alerts.ledger.claim_terms import Claimant
from kpi_alerts.pipeline.alert_run import RunSettings, process_alert
from kpi_alerts.pipeline.trial import compose_trial
from tests.polling import wait_until

pytestmark = pytest.mark.services

ORG = 7127
GENERATIONS = itertools.count(1)
CHECKED = date(2026, 11, 30)  # a Monday: the latest complete day at the slot
SLOT = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
WEEKS = 8
QUERY = {
    "measures": ["orders.total_amount"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-11-24", "2026-11-30"]}
    ],
}


def seasonal(day: date) -> Decimal:
    return Decimal(4200 + 37 * (day.toordinal() % 5)) if day.weekday() == 0 else Decimal(900)


HISTORIES: dict[str, Callable[[date], Decimal]] = {
    "flat": lambda day: Decimal(4000),
    "seasonal": seasonal,
    "trending": lambda day: Decimal(1000 + 25 * (day - date(2026, 9, 1)).days),
    "spike": lambda day: Decimal(20000) if day == date(2026, 11, 2) else seasonal(day),
    "drop": lambda day: Decimal(2710) if day == CHECKED else seasonal(day),
}


@pytest.fixture
def seed(pg: Any, cube_server: CubeServer) -> Iterator[Callable[[Callable[[date], Decimal], int], None]]:
    """Writes one order a day (noon UTC) for the last ``days`` days up to CHECKED, then waits for Cube."""
    cube = CubeClient(cube_server.url, api_secret=cube_server.api_secret)
    with cube, psycopg.connect(pg.url("analytics"), autocommit=True) as conn:

        def write(amount: Callable[[date], Decimal], days: int) -> None:
            generation = next(GENERATIONS)  # new ids each time: Cube's refresh key (count, max id) changes
            conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))
            rows = [
                (
                    ORG * 100_000 + generation * 1000 + i,
                    ORG,
                    datetime(d.year, d.month, d.day, 12, tzinfo=UTC),
                    amount(d),
                )
                for i, d in enumerate(CHECKED - timedelta(days=n) for n in range(days))
            ]
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO orders VALUES (%s, %s, %s, 'completed', 'books', %s)", rows)
            expected = amount(CHECKED)

            def seen() -> bool:
                data = cube.load(QUERY, security_context={"organization_id": ORG}, timezone="UTC")
                return any(r["orders.total_amount"] == expected for r in data.rows) and len(data.rows) == 7

            wait_until(seen, timeout=30, interval=0.2, what="Cube to see the seeded history")

        yield write
        conn.execute("DELETE FROM orders WHERE organization_id = %s", (ORG,))


def independent_band(
    conn: psycopg.Connection[Any], k: float, method: str
) -> tuple[float, float, list[float]]:
    """The band from SQL rows: the same weekday in each of the WEEKS weeks before CHECKED, by plain Python."""
    rows = conn.execute(
        "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, sum(total_amount) AS amount FROM orders "
        "WHERE organization_id = %s GROUP BY 1",
        (ORG,),
    ).fetchall()
    by_day = {r["day"]: float(r["amount"]) for r in rows}
    history = [by_day[d] for w in range(1, WEEKS + 1) if (d := CHECKED - timedelta(weeks=w)) in by_day]
    if method == "median_mad":
        center = statistics.median(history)
        spread = statistics.median(abs(v - center) for v in history) * 1.4826
    else:
        center, spread = statistics.mean(history), statistics.stdev(history)
    return center - k * spread, center + k * spread, history


def check(db: psycopg.Connection[Any], cube: CubeClient, name: str, **threshold: Any) -> dict[str, Any]:
    """Create an anomaly alert and run its first slot; its ledger row."""
    spec = {
        "organization_id": ORG,
        "alert_name": f"Revenue anomaly ({name})",
        "recipients": ["ops@org7127.example.com"],
        "cube_query": QUERY,
        "threshold": {"condition": "OUTSIDE_EXPECTED_RANGE", "threshold_value": "3", **threshold},
    }
    alert_id = create_alert(db, spec, now=SLOT).alert_id
    settings = RunSettings(
        logical_time=SLOT + timedelta(minutes=5),
        final_attempt=True,
        claimant=Claimant(dag_run_id=f"anomaly-{name}", try_number=1),
    )
    process_alert(db, alert_id, source=cube, mailer=SmtpMailer(), settings=settings)
    return db.execute(
        "SELECT status, value, details FROM cron_job_results WHERE kpi_alert_id = %s", (alert_id,)
    ).fetchone()


@pytest.fixture
def cube(cube_server: CubeServer) -> Iterator[CubeClient]:
    with CubeClient(cube_server.url, api_secret=cube_server.api_secret) as client:
        yield client


@pytest.mark.usefixtures("airflow_connections")
@pytest.mark.parametrize("method", ["median_mad", "mean_std"])
@pytest.mark.parametrize("history", list(HISTORIES))
def test_decision_equals_an_independent_computation(
    db: psycopg.Connection[Any],
    cube: CubeClient,
    pg: Any,
    seed: Any,
    mailbox: MailCatcher,
    history: str,
    method: str,
) -> None:
    seed(HISTORIES[history], 7 * (WEEKS + 1))
    with psycopg.connect(pg.url("analytics"), row_factory=psycopg.rows.dict_row) as analytics:
        low, high, past = independent_band(analytics, 3.0, method)
    value = float(HISTORIES[history](CHECKED))
    expected = "breached" if not low <= value <= high else "ok"
    # An exact tie with a bound (a flat history) is decided by exact decimals, as the test does.
    row = check(db, cube, f"{history}-{method}", anomaly_method=method)

    assert len(past) == WEEKS
    assert row["details"]["observation"] == expected, row["details"]
    assert row["status"] == ("sent" if expected == "breached" else "not_triggered")
    numbers = re.search(
        r"expected (-?[\d,.]+)\N{EN DASH}(-?[\d,.]+) USD for a Monday, got ([\d,.]+) USD",
        row["details"]["description"],
    )
    assert numbers is not None, row["details"]["description"]
    shown = [float(n.replace(",", "")) for n in numbers.groups()]
    assert shown == pytest.approx([low, high, value], abs=0.51)  # whole USD from 1,000 on
    if expected == "breached":
        (message,) = mailbox.messages()
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert f"Why: {row['details']['description']}" in " ".join(text.split())


@pytest.mark.usefixtures("airflow_connections")
def test_the_drop_reads_as_the_issue_asks(
    db: psycopg.Connection[Any], cube: CubeClient, seed: Any, mailbox: MailCatcher
) -> None:
    seed(HISTORIES["drop"], 7 * (WEEKS + 1))
    row = check(db, cube, "drop-wording")
    assert row["details"]["description"].startswith("expected ")
    assert (
        ", got 2,710 USD (below the expected range; median of 8 past weeks ± 3 MAD)"
        in row["details"]["description"]
    )
    (message,) = mailbox.messages()
    assert str(message["Subject"]).startswith(
        "[KPI alert] Revenue anomaly (drop-wording): Revenue outside its expected range (± 3) (now 2,710.00 USD)"
    )


@pytest.mark.usefixtures("airflow_connections")
def test_not_enough_history_is_no_data(
    db: psycopg.Connection[Any], cube: CubeClient, seed: Any, mailbox: MailCatcher
) -> None:
    seed(HISTORIES["seasonal"], 7 * 3 + 1)  # three past Mondays
    row = check(db, cube, "short", min_history=4, on_no_data="alert")
    assert row["details"]["observation"] == "no_data"
    assert row["details"]["description"] == (
        "not enough history for Revenue: 3 past value(s) for a Monday, 4 needed"
    )
    assert row["status"] == "sent"  # the no-data policy "alert" tells the recipients
    (message,) = mailbox.messages()
    assert str(message["Subject"]).startswith("[KPI alert] No data: Revenue anomaly (short)")


@pytest.mark.usefixtures("airflow_connections")
def test_trial_shows_the_same_decision(db: psycopg.Connection[Any], seed: Any, cube: CubeClient) -> None:
    seed(HISTORIES["drop"], 7 * (WEEKS + 1))
    row = check(db, cube, "trial")
    alert_id = db.execute(
        "SELECT id FROM kpi_alerts WHERE alert_name = 'Revenue anomaly (trial)'"
    ).fetchone()["id"]
    alert = load_alert(db, alert_id)
    assert alert is not None
    settings = RunSettings(
        logical_time=SLOT + timedelta(minutes=5), final_attempt=True, claimant=Claimant("trial", 1)
    )
    trial = compose_trial(alert, "me@example.com", source=cube, settings=settings)
    assert row["details"]["description"] in trial.verdict
    assert f"Why: {row['details']['description']}" in " ".join(
        trial.message.get_body(("plain",)).get_content().split()  # type: ignore[union-attr]
    )
    # the test send's chart draws the band as the run's does
    from PIL import Image

    from kpi_alerts.reports.chart import BAND_COLOR

    (part,) = [p for p in trial.message.walk() if p.get_content_type() == "image/png"]
    image = Image.open(io.BytesIO(part.get_payload(decode=True))).convert("RGB")  # type: ignore[arg-type]
    colour = tuple(int(BAND_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    assert sum(p == colour for p in image.getdata()) > 500  # the band's slot, not only the legend's swatch


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"threshold_value": "0"}, "band's width", id="width"),
        pytest.param({"min_history": 9}, "min_history <= history_weeks", id="minimum"),
        pytest.param({"recovery_threshold": "1"}, "a recovery threshold needs one of", id="recovery"),
    ],
)
def test_refused_with_one_line(db: psycopg.Connection[Any], change: dict[str, Any], message: str) -> None:
    from kpi_alerts.errors import AlertValidationError

    spec = {
        "organization_id": ORG,
        "alert_name": "bad",
        "recipients": ["ops@org7127.example.com"],
        "cube_query": QUERY,
        "threshold": {"condition": "OUTSIDE_EXPECTED_RANGE", "threshold_value": "3", **change},
    }
    with pytest.raises(AlertValidationError, match=message):
        create_alert(db, spec, now=SLOT)
    no_series = {
        **spec,
        "cube_query": {"measures": ["orders.total_amount"]},
        "threshold": {"condition": "OUTSIDE_EXPECTED_RANGE", "threshold_value": "3"},
    }
    with pytest.raises(AlertValidationError, match="time dimension by day or hour"):
        create_alert(db, no_series, now=SLOT)


def test_plain_sql_rows_are_checked_too(db: psycopg.Connection[Any]) -> None:
    spec = {
        "organization_id": ORG,
        "alert_name": "sql",
        "recipients": ["ops@org7127.example.com"],
        "cube_query": QUERY,
        "threshold": {"condition": "ABOVE_EXPECTED_RANGE", "threshold_value": "2"},
    }
    alert_id = create_alert(db, spec, now=SLOT).alert_id
    for statement in (
        "UPDATE kpi_thresholds SET threshold_value = 0 WHERE kpi_alert_id = %s",
        "UPDATE kpi_thresholds SET min_history = 1 WHERE kpi_alert_id = %s",
        "UPDATE kpi_thresholds SET anomaly_method = 'mode' WHERE kpi_alert_id = %s",
        "UPDATE kpi_thresholds SET condition = 'SIDEWAYS' WHERE kpi_alert_id = %s",
    ):
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute(statement, (alert_id,))


@pytest.mark.usefixtures("airflow_connections")
def test_the_notice_charts_the_expected_band(
    db: psycopg.Connection[Any],
    cube: CubeClient,
    pg: Any,
    seed: Any,
    mailbox: MailCatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The drop's notice: the chart's scene has the band between the learned low and high over the
    checked Monday and the value marked below it, and the PNG in the e-mail is painted with it."""
    from PIL import Image

    from kpi_alerts.delivery import email_message
    from kpi_alerts.reports.chart import BAND_COLOR, THRESHOLD_COLOR, ChartData, chart_scene
    from kpi_alerts.reports.chart_scene import Circle, Rect

    charted: list[ChartData] = []
    render = email_message.render_chart_png

    def spy(chart: ChartData, **kw: Any) -> bytes:  # the real renderer, the chart it was given kept
        charted.append(chart)
        return render(chart, **kw)

    monkeypatch.setattr(email_message, "render_chart_png", spy)
    seed(HISTORIES["drop"], 7 * (WEEKS + 1))
    with psycopg.connect(pg.url("analytics"), row_factory=psycopg.rows.dict_row) as analytics:
        low, high, _ = independent_band(analytics, 3.0, "median_mad")
    row = check(db, cube, "chart")
    assert row["status"] == "sent"

    (chart,) = charted
    assert chart.band is not None
    assert (chart.band.low, chart.band.high) == pytest.approx((low, high), abs=1e-3)
    assert chart.band.value == 2710.0
    assert chart.band.index == len(chart.x_labels) - 1  # the checked Monday is the chart's last point
    assert chart.x_labels[chart.band.index] == "Nov 30"
    scene = chart_scene(chart)
    (band,) = [i for i in scene.items if isinstance(i, Rect) and i.fill == BAND_COLOR and not i.radius]
    (mark,) = [i for i in scene.items if isinstance(i, Circle) and i.fill == THRESHOLD_COLOR]
    assert band.x <= mark.cx <= band.x + band.width
    assert mark.cy > band.y + band.height  # 2,710 is drawn below the band (y grows downwards)

    (message,) = mailbox.messages()
    (part,) = [p for p in message.walk() if p.get_content_type() == "image/png"]
    image = Image.open(io.BytesIO(part.get_payload(decode=True))).convert("RGB")  # type: ignore[arg-type]
    colour = tuple(int(BAND_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    box = (int(band.x) + 1, int(band.y) + 1, int(band.x + band.width) - 1, int(band.y + band.height) - 1)
    pixels = list(image.crop(box).getdata())
    assert sum(p == colour for p in pixels) >= 0.8 * len(pixels)  # the band, less the grid lines across it
