"""Airflow operators: the thin shell the ``kpi_alerts`` DAG runs around the pipeline."""
