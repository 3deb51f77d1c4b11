-- depends: 0011_recipient_domains
-- When a report fires (issue 26): cron expressions, every N weeks from a start date, the n-th business
-- day of a month, and public holidays skipped or moved to the next business day; and how often a threshold
-- alert is checked (every 5-60 minutes or daily at a time, within optional active hours). All columns are
-- nullable and unused by the older kinds, so rows written by plain SQL with the seed's columns only stay
-- valid; the meaning of each value is checked by kpi_alerts.scheduling (Schedule / CheckCadence), the
-- shape here. Only kpi_schedules and kpi_thresholds change.
ALTER TABLE kpi_schedules ADD COLUMN IF NOT EXISTS cron_expression text;
ALTER TABLE kpi_schedules ADD COLUMN IF NOT EXISTS every_n_weeks smallint;
ALTER TABLE kpi_schedules ADD COLUMN IF NOT EXISTS start_date date;
ALTER TABLE kpi_schedules ADD COLUMN IF NOT EXISTS business_day smallint;
ALTER TABLE kpi_schedules ADD COLUMN IF NOT EXISTS holiday_country text;
ALTER TABLE kpi_schedules ADD COLUMN IF NOT EXISTS holiday_subdivision text;
ALTER TABLE kpi_schedules ADD COLUMN IF NOT EXISTS on_holiday text;

DO $$
BEGIN
    -- 'cron' joins the frequencies: the column's CHECK from 0002 is replaced by a named one.
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_schedules_frequency_check') THEN
        ALTER TABLE kpi_schedules DROP CONSTRAINT IF EXISTS kpi_schedules_frequency_interval_check;
        ALTER TABLE kpi_schedules ADD CONSTRAINT kpi_schedules_frequency_check
            CHECK (frequency_interval IN ('hour', 'day', 'week', 'month', 'cron'));
    END IF;
    -- A cron or business-day schedule names its days otherwise than with selected_days.
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_schedules_days_given_check') THEN
        ALTER TABLE kpi_schedules DROP CONSTRAINT IF EXISTS kpi_schedules_days_required_check;
        ALTER TABLE kpi_schedules ADD CONSTRAINT kpi_schedules_days_given_check CHECK (
            frequency_interval IN ('hour', 'day', 'cron') OR business_day IS NOT NULL
            OR cardinality(selected_days) > 0);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_schedules_cron_check') THEN
        ALTER TABLE kpi_schedules ADD CONSTRAINT kpi_schedules_cron_check CHECK (
            (frequency_interval = 'cron') = (cron_expression IS NOT NULL)
            AND (cron_expression IS NULL OR (length(cron_expression) BETWEEN 1 AND 200
                 AND schedule_hour = 0 AND schedule_minute = 0 AND cardinality(selected_days) = 0)));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_schedules_every_n_weeks_check') THEN
        ALTER TABLE kpi_schedules ADD CONSTRAINT kpi_schedules_every_n_weeks_check CHECK (
            every_n_weeks IS NULL OR (every_n_weeks BETWEEN 1 AND 52 AND frequency_interval = 'week'
                                      AND (every_n_weeks = 1 OR start_date IS NOT NULL)));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_schedules_business_day_check') THEN
        ALTER TABLE kpi_schedules ADD CONSTRAINT kpi_schedules_business_day_check CHECK (
            business_day IS NULL OR (business_day BETWEEN -10 AND 10 AND business_day <> 0
                                     AND frequency_interval = 'month' AND cardinality(selected_days) = 0));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_schedules_holidays_check') THEN
        ALTER TABLE kpi_schedules ADD CONSTRAINT kpi_schedules_holidays_check CHECK (
            (holiday_country IS NULL AND holiday_subdivision IS NULL AND on_holiday IS NULL)
            OR (holiday_country IS NOT NULL AND holiday_country ~ '^[A-Z]{2,3}$'
                AND coalesce(length(holiday_subdivision), 1) BETWEEN 1 AND 40
                AND (on_holiday IS NULL
                     OR (on_holiday IN ('skip', 'next_business_day') AND business_day IS NULL))));
    END IF;
END $$;

-- Threshold check cadence (NULL: every hour, on the hour in UTC, as before) and active hours, in minutes
-- after local midnight (active_until_minute 1440 = the day's end), in the threshold's timezone.
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS check_every_minutes smallint;
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS check_daily_minute smallint;
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS active_days smallint[];
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS active_from_minute smallint;
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS active_until_minute smallint;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_thresholds_cadence_check') THEN
        ALTER TABLE kpi_thresholds ADD CONSTRAINT kpi_thresholds_cadence_check CHECK (
            (check_every_minutes IS NULL OR check_every_minutes IN (5, 10, 15, 30, 60))
            AND (check_daily_minute IS NULL OR (check_daily_minute BETWEEN 0 AND 1439
                                                AND check_every_minutes IS NULL AND active_from_minute IS NULL)));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_thresholds_active_hours_check') THEN
        ALTER TABLE kpi_thresholds ADD CONSTRAINT kpi_thresholds_active_hours_check CHECK (
            (active_days IS NULL OR active_days <@ ARRAY[0,1,2,3,4,5,6]::smallint[])
            AND (active_from_minute IS NULL) = (active_until_minute IS NULL)
            AND (active_from_minute IS NULL
                 OR (active_from_minute BETWEEN 0 AND 1439 AND active_until_minute BETWEEN 1 AND 1440
                     AND active_until_minute > active_from_minute)));
    END IF;
END $$;
