"""The operators' settings come from one table (kpi_alerts.settings): each argument's default reads its
Variable, the rendered text is parsed by the table's parser, and the ``*_conn_id`` arguments default to
the hooks' own ``default_conn_name``."""

from __future__ import annotations

from airflow.providers.smtp.hooks.smtp import SmtpHook

from kpi_alerts.hooks.alerts_db import AlertsDbHook
from kpi_alerts.hooks.cube import CubeHook
from kpi_alerts.operators.kpi_alerts import DueAlertsOperator, KpiAlertOperator, KpiAlertsSummaryOperator
from kpi_alerts.settings import SETTINGS


def test_every_templated_setting_reads_its_variable_by_default() -> None:
    op = KpiAlertOperator(task_id="t", item={"alerts": []})
    for setting in KpiAlertOperator.settings:
        assert getattr(op, setting.name) == setting.template
        assert setting.variable in setting.template
    assert set(KpiAlertOperator.template_fields) == {s.name for s in KpiAlertOperator.settings}


def test_rendered_text_is_parsed_by_the_table() -> None:
    op = DueAlertsOperator(
        task_id="t",
        misfire_minutes="45",
        parallelism="3.0",
        batch_threshold=" ",
        batch_seconds="60",
        seconds_per_alert="0.05",
    )
    settings = op.task_settings()  # as after rendering: text
    assert settings.misfire_minutes == 45.0
    assert settings.parallelism == 3
    assert settings.batch_threshold == 0  # blank: the table's default


def rendered(op: KpiAlertOperator | KpiAlertsSummaryOperator) -> KpiAlertOperator | KpiAlertsSummaryOperator:
    for setting in op.settings:  # what rendering does with no Variable set
        setattr(op, setting.name, setting.default)
    return op


def test_connection_ids_default_to_the_hooks_and_can_be_changed() -> None:
    default = rendered(KpiAlertOperator(task_id="t", item={"alerts": []})).task_settings()
    assert default.alerts_db_conn_id == AlertsDbHook.default_conn_name
    assert default.cube_conn_id == CubeHook.default_conn_name
    assert default.smtp_conn_id == SmtpHook.default_conn_name
    own = rendered(
        KpiAlertOperator(
            task_id="t",
            item={"alerts": []},
            alerts_db_conn_id="db2",
            cube_conn_id="cube2",
            smtp_conn_id="mail2",
        )
    ).task_settings()
    assert (own.alerts_db_conn_id, own.cube_conn_id, own.smtp_conn_id) == ("db2", "cube2", "mail2")
    summary = rendered(KpiAlertsSummaryOperator(task_id="s", alerts_db_conn_id="db2")).task_settings()
    assert summary.alerts_db_conn_id == "db2"


def test_each_setting_is_written_once() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
