# Airflow 3.3.2 with this project's pinned dependencies; cairo for the chart (CairoSVG), DejaVu for the PDF.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends libcairo2 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
USER airflow
COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt
# The package as an Airflow provider (the `cube` connection type, operators, notifier): installed
# editable from /opt/airflow/plugins, where docker-compose mounts ./plugins.
COPY --chown=airflow pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow plugins/kpi_alerts /opt/airflow/plugins/kpi_alerts
RUN pip install --no-cache-dir --no-deps -e /opt/airflow
