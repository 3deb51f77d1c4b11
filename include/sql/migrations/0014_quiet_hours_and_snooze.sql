-- depends: 0013_what_alerts_notice
-- Quiet hours and snooze (issue 26, part 4). An alert's quiet hours are in its timezone, an organization's
-- in the organization's (quiet_timezone); minutes after local midnight, across midnight when the end is
-- earlier than the start (22:00-07:00 is 1320-420), the end 1440 = the day's end. quiet_reports says what a
-- report due inside them does: 'delay' (sent at their end) or 'skip'. snoozed_until: no slot before it runs
-- (like pause, without a backlog). Product tables only: cron_jobs and cron_job_results do not change; the
-- meaning is checked by kpi_alerts.scheduling.quiet_hours, the shape here.
ALTER TABLE kpi_alerts ADD COLUMN IF NOT EXISTS quiet_from_minute smallint;
ALTER TABLE kpi_alerts ADD COLUMN IF NOT EXISTS quiet_until_minute smallint;
ALTER TABLE kpi_alerts ADD COLUMN IF NOT EXISTS quiet_days smallint[];
ALTER TABLE kpi_alerts ADD COLUMN IF NOT EXISTS quiet_reports text;
ALTER TABLE kpi_alerts ADD COLUMN IF NOT EXISTS snoozed_until timestamptz;

ALTER TABLE kpi_organization_settings ADD COLUMN IF NOT EXISTS quiet_from_minute smallint;
ALTER TABLE kpi_organization_settings ADD COLUMN IF NOT EXISTS quiet_until_minute smallint;
ALTER TABLE kpi_organization_settings ADD COLUMN IF NOT EXISTS quiet_days smallint[];
ALTER TABLE kpi_organization_settings ADD COLUMN IF NOT EXISTS quiet_timezone text;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_alerts_quiet_hours_check') THEN
        ALTER TABLE kpi_alerts ADD CONSTRAINT kpi_alerts_quiet_hours_check CHECK (
            (quiet_from_minute IS NULL) = (quiet_until_minute IS NULL)
            AND (quiet_from_minute IS NULL
                 OR (quiet_from_minute BETWEEN 0 AND 1439 AND quiet_until_minute BETWEEN 0 AND 1440
                     AND quiet_until_minute <> quiet_from_minute))
            AND (quiet_days IS NULL OR quiet_days <@ ARRAY[0,1,2,3,4,5,6]::smallint[])
            AND (quiet_reports IS NULL OR quiet_reports IN ('delay', 'skip')));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_organization_settings_quiet_hours_check') THEN
        ALTER TABLE kpi_organization_settings ADD CONSTRAINT kpi_organization_settings_quiet_hours_check CHECK (
            (quiet_from_minute IS NULL) = (quiet_until_minute IS NULL)
            AND (quiet_from_minute IS NULL) = (quiet_timezone IS NULL)
            AND (quiet_from_minute IS NULL
                 OR (quiet_from_minute BETWEEN 0 AND 1439 AND quiet_until_minute BETWEEN 0 AND 1440
                     AND quiet_until_minute <> quiet_from_minute AND kpi_is_timezone(quiet_timezone)))
            AND (quiet_days IS NULL OR quiet_days <@ ARRAY[0,1,2,3,4,5,6]::smallint[]));
    END IF;
    -- 'snoozed' joins the recorded changes: the column's CHECK from 0007 is replaced by a named one.
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_alert_events_action_named_check'
                   AND conrelid = 'kpi_alert_events'::regclass) THEN
        ALTER TABLE kpi_alert_events DROP CONSTRAINT IF EXISTS kpi_alert_events_action_check;
        ALTER TABLE kpi_alert_events ADD CONSTRAINT kpi_alert_events_action_named_check CHECK (
            action IN ('created', 'updated', 'paused', 'resumed', 'deleted', 'test_send', 'snoozed'));
    END IF;
END $$;
