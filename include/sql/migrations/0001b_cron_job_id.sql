-- depends: 0001_cron_jobs
-- The product's view of cron_jobs.id, whatever its type (bigint, integer, text, varchar, uuid).
--
-- * kpi_cron_job_id: a domain over that type. Every column and parameter that holds a cron job's id is
--   of it (kpi_alerts.cron_job_id, the ledger's and events' cron_job_id in tables migrate creates, the
--   SQL's casts), so the code treats the id as opaque text while PostgreSQL compares in the column's
--   own type (its indexes used).
-- * kpi_new_cron_job_id(): an id for a new row of the product's: the column's own default where it has
--   one (the backend's sequence, shared: the other jobs never meet an id the product took), else the
--   next value of the product's own sequence that no row has taken (the seed writes random bigints by
--   hand), or a random uuid. The default of cron_jobs.id where migrate created the table, so the seed's
--   INSERT that names no id works.
-- * kpi_stamps_cron_jobs(): whether a claim stamps last_ran_at_* on the product's row. Not when the
--   backend's prevent_multiple_updates trigger fires on every UPDATE (or on a column the product writes
--   between claims): a stamp would freeze the row — its next run, its pause — until the next hour's
--   stamp. The product's claims rest on the ledger's unique (cron_job_id, slot) either way. Read at run
--   time, so it follows the backend if it re-attaches its trigger.

DO $$
DECLARE
    id_type text := (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                     WHERE attrelid = 'cron_jobs'::regclass AND attname = 'id');
    id_default text := coalesce(
        (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
         JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
         WHERE d.adrelid = 'cron_jobs'::regclass AND a.attname = 'id'),
        (SELECT format('nextval(%L)', seq) FROM pg_get_serial_sequence('cron_jobs', 'id') AS seq
         WHERE seq IS NOT NULL));  -- an identity column
BEGIN
    IF to_regtype('kpi_cron_job_id') IS NULL THEN
        EXECUTE format('CREATE DOMAIN kpi_cron_job_id AS %s', id_type);
    END IF;
    CREATE SEQUENCE IF NOT EXISTS kpi_cron_job_id_seq;
    IF id_default IS NOT NULL THEN
        EXECUTE format('CREATE OR REPLACE FUNCTION kpi_new_cron_job_id() RETURNS kpi_cron_job_id '
                       'LANGUAGE sql VOLATILE AS %L', format('SELECT (%s)::text::kpi_cron_job_id', id_default));
    ELSIF id_type = 'uuid' THEN
        CREATE OR REPLACE FUNCTION kpi_new_cron_job_id() RETURNS kpi_cron_job_id
            LANGUAGE sql VOLATILE AS 'SELECT gen_random_uuid()::text::kpi_cron_job_id';
    ELSE
        CREATE OR REPLACE FUNCTION kpi_new_cron_job_id() RETURNS kpi_cron_job_id
            LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $fn$
        DECLARE
            candidate kpi_cron_job_id;
        BEGIN
            LOOP
                candidate := nextval('kpi_cron_job_id_seq')::text::kpi_cron_job_id;
                EXIT WHEN NOT EXISTS (SELECT 1 FROM cron_jobs WHERE id = candidate);
            END LOOP;
            RETURN candidate;
        END
        $fn$;
    END IF;
    IF current_setting('kpi_alerts.created_cron_jobs', true) = 'yes' THEN
        ALTER TABLE cron_jobs ALTER COLUMN id SET DEFAULT kpi_new_cron_job_id();
    END IF;
END $$;

CREATE OR REPLACE FUNCTION kpi_stamps_cron_jobs() RETURNS boolean
    LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT NOT EXISTS (
        SELECT 1 FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE t.tgrelid = 'cron_jobs'::regclass AND p.proname = 'prevent_multiple_updates'
          AND t.tgenabled <> 'D'
          AND (cardinality(t.tgattr::int2[]) = 0
               OR EXISTS (SELECT 1 FROM pg_attribute a
                          WHERE a.attrelid = t.tgrelid AND a.attnum = ANY (t.tgattr::int2[])
                            AND a.attname NOT IN ('last_ran_at_date', 'last_ran_at_hour', 'last_ran_at_minute'))))
$$;
