-- The alerts database (kpi_alerts_db) and the analytics database Cube reads, beside Airflow's own.
CREATE ROLE kpi LOGIN PASSWORD 'kpi';
CREATE DATABASE kpi_alerts OWNER kpi;
CREATE DATABASE analytics OWNER kpi;
