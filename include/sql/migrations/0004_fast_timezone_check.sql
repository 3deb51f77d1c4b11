-- depends: 0003_cron_job_results
-- kpi_is_timezone() scanned pg_timezone_names, which reads every zone file of the server on each
-- call (~9 ms). PostgreSQL evaluates a table's CHECK constraints on every INSERT *and every UPDATE*
-- of a row, so kpi_schedules_timezone_check / kpi_thresholds_timezone_check cost ~9 ms per write:
-- finish_claim updates a threshold alert's state at every hourly evaluation, which capped claims at
-- ~100 per second per CPU (and made creating 1,000 alerts take ~9 s).
--
-- Same answer, fast: names are looked up in a snapshot of pg_timezone_names taken here (primary
-- key lookup); a name not in the snapshot still gets the exact, slow check, so a zone added by a
-- later tzdata is never refused. The CHECK constraints themselves are unchanged.

CREATE TABLE IF NOT EXISTS kpi_timezone_names (name text PRIMARY KEY);
INSERT INTO kpi_timezone_names (name) SELECT name FROM pg_timezone_names ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION kpi_is_timezone(name text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE
    SET search_path FROM CURRENT
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM kpi_timezone_names AS known WHERE known.name = $1) THEN
        RETURN true;
    END IF;
    RETURN EXISTS (SELECT 1 FROM pg_timezone_names AS tz WHERE tz.name = $1);
END
$$;
