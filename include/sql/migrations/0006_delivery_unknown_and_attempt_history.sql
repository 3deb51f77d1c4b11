-- depends: 0005_alert_message
-- Two things the ledger could not say (issue 9):
--
-- * delivery_unknown: the message was transmitted (SMTP DATA) but the server's answer never came
--   (connection dropped, timeout), or a worker died while delivering. It may have been delivered, so
--   it is never resent automatically; an operator may replay it. Replaces the 'failed' such slots
--   used to get, which a re-attempt of failed slots would have sent twice. (The status list is
--   kpi_alerts_result_status_check, 0010.)
-- * attempt_history: each attempt that did not finish the slot (a transient failure released for a
--   retry, a lease taken over), so a slot that succeeds on a later try keeps the earlier errors.

ALTER TABLE cron_job_results ADD COLUMN IF NOT EXISTS attempt_history jsonb DEFAULT '[]'::jsonb;

-- The product's slots recorded as failed because their worker stopped during delivery (the earlier wording).
UPDATE cron_job_results SET status = 'delivery_unknown'
WHERE kpi_alert_id IS NOT NULL AND status = 'failed'
  AND (error LIKE '%stopped during SMTP delivery%' OR error LIKE '%(sending)%');
