-- The analytics database Cube reads, beside Airflow's own (the alerts database has a server of its
-- own: the alerts-db service).
CREATE ROLE kpi LOGIN PASSWORD 'kpi';
CREATE DATABASE analytics OWNER kpi;
