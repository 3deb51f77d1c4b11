-- depends: 0007_alert_events
-- How an alert's reports write numbers (issue 14): the locale (thousands separators, decimal mark,
-- currency symbol), the currency of its currency measures, whether its percent measures hold fractions
-- or percents, and labels that override Cube's titles per column. All optional: NULL means the
-- organization's setting, then Cube's meta, then en-US / fractions.
ALTER TABLE kpi_alerts ADD COLUMN IF NOT EXISTS locale text;
ALTER TABLE kpi_alerts ADD COLUMN IF NOT EXISTS currency text;
ALTER TABLE kpi_alerts ADD COLUMN IF NOT EXISTS percent_scale text;
ALTER TABLE kpi_alerts ADD COLUMN IF NOT EXISTS column_labels jsonb;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_alerts_locale_check') THEN
        ALTER TABLE kpi_alerts ADD CONSTRAINT kpi_alerts_locale_check
            CHECK (locale ~ '^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_alerts_currency_check') THEN
        ALTER TABLE kpi_alerts ADD CONSTRAINT kpi_alerts_currency_check CHECK (currency ~ '^[A-Z]{3}$');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_alerts_percent_scale_check') THEN
        ALTER TABLE kpi_alerts ADD CONSTRAINT kpi_alerts_percent_scale_check
            CHECK (percent_scale IN ('fraction', 'percent'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_alerts_column_labels_check') THEN
        ALTER TABLE kpi_alerts ADD CONSTRAINT kpi_alerts_column_labels_check
            CHECK (jsonb_typeof(column_labels) = 'object' AND length(column_labels::text) <= 10000);
    END IF;
END $$;

-- Per-organization defaults: the currency its money is in (an alert's own currency wins).
CREATE TABLE IF NOT EXISTS kpi_organization_settings (
    organization_id bigint PRIMARY KEY,
    currency        text CHECK (currency ~ '^[A-Z]{3}$'),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
