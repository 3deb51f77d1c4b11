-- depends: 0007_alert_events
-- Message-IDs were sha256(cron_job_id, slot)@kpi-alerts.local: two deployments (or a database restored
-- into a new one) sent different messages under the same Message-ID, and mail clients threaded or
-- dropped them as duplicates. Each ledger row now carries a random token, drawn once when the slot is
-- first claimed: the Message-ID is built from it and the deployment's domain, so every retry of one
-- slot (Airflow tries, later ticks, a takeover) sends the same Message-ID and no two slots or
-- deployments share one. Existing rows get a token too (their messages were sent already).

ALTER TABLE cron_job_results ADD COLUMN IF NOT EXISTS message_token uuid NOT NULL DEFAULT gen_random_uuid();
