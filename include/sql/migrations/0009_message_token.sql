-- depends: 0007_alert_events
-- Message-IDs were sha256(cron_job_id, slot)@kpi-alerts.local: two deployments (or a database restored
-- into a new one) sent different messages under the same Message-ID, and mail clients threaded or
-- dropped them as duplicates. Each of the product's ledger rows carries a random token, drawn once when
-- the slot is first claimed (kpi_alerts_result_defaults, 0010): the Message-ID is built from it and the
-- deployment's domain, so every retry of one slot (Airflow tries, later ticks, a takeover) sends the
-- same Message-ID and no two slots or deployments share one.

ALTER TABLE cron_job_results ADD COLUMN IF NOT EXISTS message_token uuid;
