"""Airflow notifiers: failure notices for DAG and task callbacks."""
