"""The DAG folder parses, and the kpi_alerts DAG has the contract's shape."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from airflow.dag_processing.dagbag import DagBag

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def dagbag(airflow_db: None) -> DagBag:
    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}


def test_kpi_alerts_dag_contract(dagbag: DagBag) -> None:
    dag = dagbag.get_dag("kpi_alerts")
    assert dag is not None
    assert dag.timetable.expression == "*/5 * * * *"
    assert str(dag.timezone.name) == "America/Los_Angeles"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert "kpi-alerts" in dag.tags
    assert dag.doc_md and "KPI alerts" in dag.doc_md
    assert set(dag.task_ids) == {"find_due_alerts", "process_alert", "summarize"}
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
    process = dag.get_task("process_alert")
    assert process.map_index_template == "{{ alert_label }}"
    assert process.operator_name == "KpiAlertOperator" and type(process).__name__ == "MappedOperator"
    assert dag.get_task("find_due_alerts").operator_name == "DueAlertsOperator"
    assert dag.get_task("summarize").operator_name == "KpiAlertsSummaryOperator"
    assert dag.get_task("summarize").trigger_rule == "all_done"


def test_parsing_touches_no_database_network_or_heavy_library() -> None:
    """Importing the DAG file loads none of the heavy libraries and opens no socket."""
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('network at parse time')\n"
        "socket.socket.connect = refuse\n"
        "import airflow.sdk\n"
        f"sys.path[:0] = [{str(REPO_ROOT / 'plugins')!r}, {str(REPO_ROOT / 'dags')!r}]\n"
        "import runpy; runpy.run_path(" + repr(str(REPO_ROOT / "dags" / "kpi_alerts_dag.py")) + ")\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'pandas', 'openpyxl', 'reportlab', 'weasyprint', 'matplotlib', 'psycopg', 'requests', 'jwt'})\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1:] in ([""], []), out.stdout


def test_the_dag_folder_ahead_of_the_package_on_sys_path_does_not_shadow_it() -> None:
    """With PYTHONPATH=dags:plugins, ``import kpi_alerts`` (Airflow's provider entry point) finds the package,
    not the DAG file: the DAG file has a module name of its own (its DAG id is still ``kpi_alerts``)."""
    code = (
        "from airflow.providers_manager import ProvidersManager\n"
        "manager = ProvidersManager(); manager.initialize_providers_hooks()\n"
        "import kpi_alerts; print('RESULT', kpi_alerts.__file__, 'cube' in manager.hooks)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'dags'}:{REPO_ROOT / 'plugins'}"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    _, package, cube_hook = next(
        line for line in out.stdout.splitlines() if line.startswith("RESULT ")
    ).split()
    assert package == str(REPO_ROOT / "plugins" / "kpi_alerts" / "__init__.py")
    assert cube_hook == "True"
