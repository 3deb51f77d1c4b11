-- depends: 0012_schedule_calendars
-- What a threshold alert can notice (issue 27), on kpi_thresholds only:
-- * recovery_threshold (hysteresis): once triggered, the alert recovers only past this level
--   ("alert above 100, recover below 90"); only for > >= < <=, and on the OK side of the threshold.
-- * pending_checks / recovery_checks (pending period): breached checks in a row before a breach is
--   notified, OK checks in a row before it recovers; streak is the run so far (state, like `state`).
-- The rules mirror kpi_alerts.conditions (validate_recovery, alerts.spec) so a row written by plain SQL
-- is refused at insert time with the same meaning.
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS recovery_threshold numeric;
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS pending_checks integer NOT NULL DEFAULT 1;
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS recovery_checks integer NOT NULL DEFAULT 1;
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS streak integer NOT NULL DEFAULT 0;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'kpi_thresholds'::regclass
                   AND conname = 'kpi_thresholds_recovery_threshold_check') THEN
        ALTER TABLE kpi_thresholds ADD CONSTRAINT kpi_thresholds_recovery_threshold_check CHECK (
            recovery_threshold IS NULL
            OR (condition IN ('GREATER_THAN', 'GREATER_THAN_OR_EQUAL') AND recovery_threshold <= threshold_value)
            OR (condition IN ('LESS_THAN', 'LESS_THAN_OR_EQUAL') AND recovery_threshold >= threshold_value));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'kpi_thresholds'::regclass
                   AND conname = 'kpi_thresholds_pending_checks_check') THEN
        ALTER TABLE kpi_thresholds ADD CONSTRAINT kpi_thresholds_pending_checks_check CHECK (
            pending_checks BETWEEN 1 AND 720 AND recovery_checks BETWEEN 1 AND 720 AND streak >= 0);
    END IF;
END $$;

-- Anomaly conditions (kpi_alerts.conditions.anomaly): the value against a band learned from the same
-- weekday (and hour) of the last history_weeks weeks; threshold_value is the band's half-width in MADs
-- or standard deviations. The condition list gains their names: the old list's CHECK (0002's column
-- CHECK, named by PostgreSQL) is replaced only where it is ours and lacks them.
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS anomaly_method text NOT NULL DEFAULT 'median_mad';
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS history_weeks integer NOT NULL DEFAULT 8;
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS min_history integer NOT NULL DEFAULT 4;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'kpi_thresholds'::regclass
               AND conname = 'kpi_thresholds_condition_check'
               AND pg_get_constraintdef(oid) NOT LIKE '%EXPECTED_RANGE%') THEN
        ALTER TABLE kpi_thresholds DROP CONSTRAINT kpi_thresholds_condition_check;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'kpi_thresholds'::regclass
                   AND conname = 'kpi_thresholds_condition_check') THEN
        ALTER TABLE kpi_thresholds ADD CONSTRAINT kpi_thresholds_condition_check CHECK (condition IN (
            'GREATER_THAN', 'LESS_THAN', 'GREATER_THAN_OR_EQUAL', 'LESS_THAN_OR_EQUAL', 'EQUAL', 'NOT_EQUAL',
            'INCREASED_BY_PERCENT', 'DECREASED_BY_PERCENT',
            'OUTSIDE_EXPECTED_RANGE', 'ABOVE_EXPECTED_RANGE', 'BELOW_EXPECTED_RANGE'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'kpi_thresholds'::regclass
                   AND conname = 'kpi_thresholds_anomaly_check') THEN
        ALTER TABLE kpi_thresholds ADD CONSTRAINT kpi_thresholds_anomaly_check CHECK (
            anomaly_method IN ('median_mad', 'mean_std')
            AND 2 <= min_history AND min_history <= history_weeks AND history_weeks <= 52
            AND (condition NOT LIKE '%EXPECTED_RANGE' OR (threshold_value > 0 AND threshold_value <= 100)));
    END IF;
END $$;

-- Reports only if changed: a scheduled report may skip a slot whose data equals the last report sent
-- (recorded 'skipped' with the reason); the sent row's details carry the data's digest.
ALTER TABLE kpi_schedules ADD COLUMN IF NOT EXISTS only_if_changed boolean NOT NULL DEFAULT false;

-- Per-group checks: group_by names a dimension of the alert's query; each group's state is kept in
-- kpi_threshold_groups (a group absent from it is OK), written with the run's ledger row.
ALTER TABLE kpi_thresholds ADD COLUMN IF NOT EXISTS group_by text;
CREATE TABLE IF NOT EXISTS kpi_threshold_groups (
    kpi_alert_id     bigint NOT NULL REFERENCES kpi_alerts (id) ON DELETE CASCADE,
    group_key        text   NOT NULL,
    state            text   NOT NULL CHECK (state IN ('OK', 'TRIGGERED', 'NO_DATA')),
    last_value       numeric,
    last_notified_at timestamptz,
    streak           integer NOT NULL DEFAULT 0 CHECK (streak >= 0),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kpi_alert_id, group_key)
);
