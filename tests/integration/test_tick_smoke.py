"""A small peak tick (the benchmark's mix, 200 alerts) through the real DAG: every recipient gets exactly
one message. Time is measured by bench/bench_tick.py, never here."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from bench import bench_tick
from devstack.mail import MailCatcher

pytestmark = [pytest.mark.slow, pytest.mark.services]

N = 200


def test_a_tick_of_200_alerts_sends_each_recipient_exactly_one_message(
    kpi_dag: Any,
    db: psycopg.Connection[Any],
    alerts_db_url: str,
    mailbox: MailCatcher,
    airflow_connections: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_KPI_ALERTS_PARALLELISM", "4")  # the README's setting for 2 cores
    bench_tick.create_alerts(alerts_db_url, N)

    dag_run = kpi_dag.test(logical_date=bench_tick.LOGICAL_TIME)

    assert str(dag_run.state) == "success"
    mapped = sorted(
        ti.rendered_map_index for ti in dag_run.get_task_instances() if ti.task_id == "process_alert"
    )
    assert mapped == [f"batch {k}/4: alerts {50 * k - 49}-{50 * k}: 50 sent" for k in range(1, 5)]
    messages, duplicates, missing = bench_tick.mail_counts(mailbox.folder, N)
    assert (messages, duplicates, missing) == (N, 0, 0)
    rows = db.execute("SELECT status, count(*) AS n FROM cron_job_results GROUP BY status").fetchall()
    assert [(r["status"], r["n"]) for r in rows] == [("sent", N)]
