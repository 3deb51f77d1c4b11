-- depends: 0014_quiet_hours_and_snooze
-- Reports that wait for fresh data (issue 26, part 5). A report's kpi_schedules row may name the data it
-- needs fresh: freshness_source 'cube' (the refresh time Cube reports for its query) or 'asset' (the latest
-- event of the Airflow asset freshness_asset, a URI), how old it may be at the slot (max_age) and how long
-- the report waits for it after its slot (max_wait). A waiting slot is a ledger row in status 'waiting':
-- the status list of the product's rows (kpi_alerts_result_status_check, ours since 0010) gains it. The
-- backend's other jobs' rows and statuses do not change; the meaning is checked by
-- kpi_alerts.conditions.freshness, the shape here.
ALTER TABLE kpi_schedules ADD COLUMN IF NOT EXISTS freshness_source text;
ALTER TABLE kpi_schedules ADD COLUMN IF NOT EXISTS freshness_asset text;
ALTER TABLE kpi_schedules ADD COLUMN IF NOT EXISTS freshness_max_age_minutes integer;
ALTER TABLE kpi_schedules ADD COLUMN IF NOT EXISTS freshness_max_wait_minutes integer;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_schedules_freshness_check'
                   AND conrelid = 'kpi_schedules'::regclass) THEN
        ALTER TABLE kpi_schedules ADD CONSTRAINT kpi_schedules_freshness_check CHECK (
            (freshness_source IS NULL AND freshness_asset IS NULL AND freshness_max_age_minutes IS NULL
             AND freshness_max_wait_minutes IS NULL)
            OR (freshness_source IN ('cube', 'asset')
                AND (freshness_source = 'asset') = (freshness_asset IS NOT NULL)
                AND (freshness_asset IS NULL OR length(freshness_asset) BETWEEN 1 AND 1500)
                AND freshness_max_age_minutes BETWEEN 1 AND 525600
                AND freshness_max_wait_minutes BETWEEN 5 AND 1440));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'cron_job_results'::regclass
                   AND conname = 'kpi_alerts_result_status_check'
                   AND pg_get_constraintdef(oid) LIKE '%''waiting''%') THEN
        ALTER TABLE cron_job_results DROP CONSTRAINT IF EXISTS kpi_alerts_result_status_check;
        ALTER TABLE cron_job_results ADD CONSTRAINT kpi_alerts_result_status_check CHECK (
            kpi_alert_id IS NULL OR (slot IS NOT NULL AND status IN (
                'claimed', 'retrying', 'waiting', 'sending', 'sent', 'delivery_unknown', 'not_triggered',
                'suppressed', 'gated', 'failed', 'missed', 'skipped')));
    END IF;
END $$;

-- The waiting slots, found on every tick without scanning the shared table (ledger.due_alerts).
CREATE INDEX IF NOT EXISTS cron_job_results_kpi_waiting_idx ON cron_job_results (cron_job_id, slot)
    WHERE status = 'waiting' AND kpi_alert_id IS NOT NULL;
