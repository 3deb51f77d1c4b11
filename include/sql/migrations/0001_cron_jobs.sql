-- cron_jobs is the backend's table (the seed: it "already exists" and its other cron jobs use it).
-- Adopt it as found — its id type, columns, rows and trigger — and only ADD what the product needs;
-- create it only where it is missing. migrate refused beforehand any shape this cannot adopt
-- (kpi_alerts.ledger.installation).

-- A new table: ids are text, as the seed writes them ((random bigint)::text); an INSERT that names no
-- id gets one from kpi_new_cron_job_id() (0001b). The seed's trigger guards the run-time columns only.
DO $$
BEGIN
    IF to_regclass('cron_jobs') IS NULL THEN
        PERFORM set_config('kpi_alerts.created_cron_jobs', 'yes', true);  -- read by 0001b, same transaction
        CREATE TABLE cron_jobs (
            id                  text    PRIMARY KEY,
            job_name            text    NOT NULL UNIQUE,
            locked              boolean NOT NULL DEFAULT false,
            master_locked       boolean NOT NULL DEFAULT false,
            last_ran_at_date    date,
            last_ran_at_hour    smallint CHECK (last_ran_at_hour BETWEEN 0 AND 23),
            last_ran_at_minute  smallint CHECK (last_ran_at_minute BETWEEN 0 AND 59)
        );
        IF to_regproc('prevent_multiple_updates') IS NULL THEN
            -- The seed's guard, verbatim: a second stamp of the same UTC date + hour raises.
            CREATE FUNCTION prevent_multiple_updates() RETURNS TRIGGER AS $fn$
            BEGIN
                IF NEW.last_ran_at_date = OLD.last_ran_at_date AND
                   NEW.last_ran_at_hour = OLD.last_ran_at_hour THEN
                    RAISE EXCEPTION 'This cron job has already been executed in the current hour';
                END IF;
                RETURN NEW;
            END;
            $fn$ LANGUAGE plpgsql;
        END IF;
        CREATE TRIGGER prevent_multiple_updates
            BEFORE UPDATE OF last_ran_at_date, last_ran_at_hour ON cron_jobs
            FOR EACH ROW EXECUTE FUNCTION prevent_multiple_updates();
    END IF;
END $$;

-- The backend's own columns, where an adopted table lacks them (nullable or with a constant default:
-- the other jobs' INSERTs, which do not name them, keep working).
ALTER TABLE cron_jobs ADD COLUMN IF NOT EXISTS job_name text;
ALTER TABLE cron_jobs ADD COLUMN IF NOT EXISTS locked boolean NOT NULL DEFAULT false;
ALTER TABLE cron_jobs ADD COLUMN IF NOT EXISTS master_locked boolean NOT NULL DEFAULT false;
ALTER TABLE cron_jobs ADD COLUMN IF NOT EXISTS last_ran_at_date date;
ALTER TABLE cron_jobs ADD COLUMN IF NOT EXISTS last_ran_at_hour smallint;
ALTER TABLE cron_jobs ADD COLUMN IF NOT EXISTS last_ran_at_minute smallint;
-- next_run_at: the alert's next slot (UTC). NULL for rows made by plain SQL: computed on first sight.
ALTER TABLE cron_jobs ADD COLUMN IF NOT EXISTS next_run_at timestamptz;
ALTER TABLE cron_jobs ADD COLUMN IF NOT EXISTS created_at timestamptz DEFAULT now();

-- The due query: "next_run_at <= logical time" over unpaused rows, and rows not yet initialised
-- (only the product's rows ever have a next_run_at; the other jobs' rows are NULL there).
CREATE INDEX IF NOT EXISTS cron_jobs_due_idx ON cron_jobs (next_run_at) WHERE NOT master_locked;
CREATE INDEX IF NOT EXISTS cron_jobs_uninitialised_idx ON cron_jobs (id) WHERE next_run_at IS NULL;
