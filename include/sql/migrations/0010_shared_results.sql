-- depends: 0009_message_token
-- cron_job_results is shared with the backend's other cron jobs: the product's rules apply to the
-- product's rows only — those with a kpi_alert_id, which the other jobs never write.
--
-- * The status and delivery lists are CHECKs on the product's rows; the other jobs keep writing their
--   own statuses ('success', 'failure', ...). Installs made before this had them on every row, under
--   the names PostgreSQL gives a column CHECK — the backend's table may use those names too, so ours
--   are dropped only where they are ours (they list 'delivery_unknown' / 'outbox').
-- * kpi_alerts_result_defaults(): what the product's rows need and an adopted table may not give: an
--   id of the table's own id type where its id column has no default, the slot's Message-ID token,
--   created_at (retention's clock).

DO $$
DECLARE
    old record;
BEGIN
    FOR old IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'cron_job_results'::regclass AND contype = 'c'
          AND ((conname = 'cron_job_results_status_check' AND pg_get_constraintdef(oid) LIKE '%delivery_unknown%')
               OR (conname = 'cron_job_results_delivery_check' AND pg_get_constraintdef(oid) LIKE '%outbox%'))
    LOOP
        EXECUTE format('ALTER TABLE cron_job_results DROP CONSTRAINT %I', old.conname);
    END LOOP;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'cron_job_results'::regclass
                   AND conname = 'kpi_alerts_result_status_check') THEN
        ALTER TABLE cron_job_results ADD CONSTRAINT kpi_alerts_result_status_check CHECK (
            kpi_alert_id IS NULL OR (slot IS NOT NULL AND status IN (
                'claimed', 'retrying', 'sending', 'sent', 'delivery_unknown', 'not_triggered', 'suppressed',
                'gated', 'failed', 'missed', 'skipped')));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'cron_job_results'::regclass
                   AND conname = 'kpi_alerts_result_delivery_check') THEN
        ALTER TABLE cron_job_results ADD CONSTRAINT kpi_alerts_result_delivery_check
            CHECK (kpi_alert_id IS NULL OR delivery IN ('smtp', 'outbox'));
    END IF;
END $$;

DO $$
DECLARE
    id_type text := (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                     WHERE attrelid = 'cron_job_results'::regclass AND attname = 'id');
    new_id text;
BEGIN
    CREATE SEQUENCE IF NOT EXISTS kpi_cron_job_results_id_seq;
    IF id_type = 'uuid' THEN
        new_id := 'NEW.id := gen_random_uuid();';
    ELSE
        -- the next value of the product's sequence that no row (the other jobs' included) has taken
        new_id := format($body$
            LOOP
                NEW.id := nextval('kpi_cron_job_results_id_seq')::text::%s;
                EXIT WHEN NOT EXISTS (SELECT 1 FROM cron_job_results WHERE id = NEW.id);
            END LOOP;$body$, id_type);
    END IF;
    EXECUTE format($fn$
        CREATE OR REPLACE FUNCTION kpi_alerts_result_defaults() RETURNS trigger
            LANGUAGE plpgsql SET search_path FROM CURRENT AS $body$
        BEGIN
            IF NEW.id IS NULL THEN
                %s
            END IF;
            NEW.message_token := coalesce(NEW.message_token, gen_random_uuid());
            NEW.created_at := coalesce(NEW.created_at, now());
            NEW.attempts := coalesce(NEW.attempts, 1);
            NEW.takeovers := coalesce(NEW.takeovers, 0);
            NEW.attempt_history := coalesce(NEW.attempt_history, '[]'::jsonb);
            RETURN NEW;
        END
        $body$
    $fn$, new_id);
END $$;

DROP TRIGGER IF EXISTS kpi_alerts_result_defaults ON cron_job_results;
CREATE TRIGGER kpi_alerts_result_defaults
    BEFORE INSERT ON cron_job_results
    FOR EACH ROW WHEN (NEW.kpi_alert_id IS NOT NULL) EXECUTE FUNCTION kpi_alerts_result_defaults();

-- The product's rows by alert (history of a deleted alert, retention), without scanning the other jobs'.
CREATE INDEX IF NOT EXISTS cron_job_results_kpi_created_at_idx ON cron_job_results (created_at)
    WHERE kpi_alert_id IS NOT NULL;
