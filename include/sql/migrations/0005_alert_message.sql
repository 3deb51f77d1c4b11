-- depends: 0004_fast_timezone_check
-- A per-alert note written by the alert's author, shown at the top of every e-mail (escaped).
ALTER TABLE kpi_alerts ADD COLUMN IF NOT EXISTS message text;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_alerts_message_check') THEN
        ALTER TABLE kpi_alerts ADD CONSTRAINT kpi_alerts_message_check CHECK (length(message) <= 2000);
    END IF;
END $$;
