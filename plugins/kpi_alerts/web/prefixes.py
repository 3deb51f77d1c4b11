"""Where the plugin mounts its two apps (under Airflow's base URL); a module of its own so that the plugin
names them without importing the apps."""

API_PREFIX = "/kpi-alerts/api/v1"
UI_PREFIX = "/kpi-alerts/ui"
