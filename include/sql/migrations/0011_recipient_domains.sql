-- depends: 0010_shared_results
-- Issue 23: a per-organization allow-list of recipient domains. When set (not NULL), an alert of the
-- organization may be addressed only to those domains or their subdomains — recipients, owners and
-- test sends alike — checked when an alert is created or changed, before a test send, and before every
-- run sends (alerts made by plain SQL, or before the list was set). NULL: no restriction (as before).
-- Only the product's own table changes; idempotent.

ALTER TABLE kpi_organization_settings ADD COLUMN IF NOT EXISTS recipient_domains text[];

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'kpi_organization_settings_recipient_domains_check') THEN
        ALTER TABLE kpi_organization_settings ADD CONSTRAINT kpi_organization_settings_recipient_domains_check
            CHECK (recipient_domains IS NULL
                   OR (cardinality(recipient_domains) BETWEEN 1 AND 100
                       AND array_to_string(recipient_domains, ',') ~ '^[a-z0-9.-]+(,[a-z0-9.-]+)*$'));
    END IF;
END $$;
