"""The project's SQL, named and parameterised. Nothing is ever built from strings at run time."""

from __future__ import annotations

# --- an alert's columns, tables and filter: written once ---------------------------------------

# Every column AlertDefinition.from_row reads (LOAD_ALERT(S), LIST_ALERTS, ALERT_OVERVIEW,
# UNINITIALISED_ALERT_ROWS) but the JSON ones, which first sight never reads.
_ALERT_SCALAR_COLUMNS = """ka.id AS alert_id, ka.cron_job_id::text AS cron_job_id, cj.job_name, ka.organization_id,
       ka.alert_type, ka.alert_name, ka.recipients, ka.is_active, ka.dashboard_url, ka.owners, ka.message,
       ka.graph_id, ka.dashboard_id, ka.created_at, ka.updated_at,
       cj.master_locked, cj.locked, cj.next_run_at,
       ka.locale, ka.currency, ka.percent_scale,
       kos.currency AS organization_currency, kos.recipient_domains,
       ka.quiet_from_minute, ka.quiet_until_minute, ka.quiet_days, ka.quiet_reports, ka.snoozed_until,
       kos.quiet_from_minute AS org_quiet_from_minute, kos.quiet_until_minute AS org_quiet_until_minute,
       kos.quiet_days AS org_quiet_days, kos.quiet_timezone AS org_quiet_timezone,
       ks.frequency_interval, ks.schedule_hour, ks.schedule_minute, ks.selected_days, ks.timezone,
       ks.cron_expression, ks.every_n_weeks, ks.start_date, ks.business_day, ks.holiday_country,
       ks.holiday_subdivision, ks.on_holiday, ks.attachment_type, ks.only_if_changed,
       ks.freshness_source, ks.freshness_asset, ks.freshness_max_age_minutes, ks.freshness_max_wait_minutes,
       kt.condition, kt.threshold_value, kt.timezone AS threshold_timezone, kt.kpi_measure,
       kt.rearm_minutes, kt.notify_on_recovery, kt.on_no_data, kt.on_error, kt.state, kt.last_value,
       kt.last_evaluated_at, kt.last_notified_at, kt.state_changed_at, kt.check_every_minutes,
       kt.check_daily_minute, kt.active_days, kt.active_from_minute, kt.active_until_minute,
       kt.recovery_threshold, kt.pending_checks, kt.recovery_checks, kt.streak,
       kt.anomaly_method, kt.history_weeks, kt.min_history, kt.group_by"""

# The JSON columns are read as text and decoded per row by AlertDefinition.from_row (a row written by
# plain SQL may hold jsonb no decoder should recurse into).
_ALERT_JSON_COLUMNS = """ka.cube_query::text AS cube_query, ks.gating_condition::text AS gating_condition,
       ka.column_labels::text AS column_labels"""

_ALERT_SELECT = "SELECT " + _ALERT_SCALAR_COLUMNS + ",\n       " + _ALERT_JSON_COLUMNS

# The tables of an alert: the alert and its cron job, its schedule or threshold, its organization's settings.
_ALERT_TABLES = """FROM kpi_alerts ka
JOIN cron_jobs cj ON cj.id = ka.cron_job_id
LEFT JOIN kpi_schedules ks ON ks.kpi_alert_id = ka.id
LEFT JOIN kpi_thresholds kt ON kt.kpi_alert_id = ka.id
LEFT JOIN kpi_organization_settings kos ON kos.organization_id = ka.organization_id
"""

# The management overview's filters (ALERT_OVERVIEW and its count, COUNT_ALERTS): each one if given.
_ALERT_FILTER = """WHERE (%(organization_id)s::bigint IS NULL OR ka.organization_id = %(organization_id)s)
  AND (%(alert_type)s::text IS NULL OR ka.alert_type = %(alert_type)s)
  AND (%(state)s::text IS NULL OR kt.state = %(state)s)
  AND (%(is_active)s::boolean IS NULL OR ka.is_active = %(is_active)s)
  AND (%(paused)s::boolean IS NULL OR cj.master_locked = %(paused)s)
"""

# --- due selection ----------------------------------------------------------------------------

# Uses cron_jobs_due_idx; rows paused by an operator or inactive are never listed.
DUE_ALERTS = """
SELECT ka.id AS alert_id, ka.alert_name, cj.id::text AS cron_job_id, cj.next_run_at
FROM cron_jobs cj
JOIN kpi_alerts ka ON ka.cron_job_id = cj.id
WHERE cj.next_run_at <= %(logical_time)s
  AND NOT cj.master_locked
  AND ka.is_active
ORDER BY cj.next_run_at, cj.id
LIMIT %(limit)s
"""

# An inactive alert leaves the due index (it would be scanned on every tick otherwise); when it is
# made active again, a NULL next_run_at is initialised on first sight like a new alert's.
PARK_INACTIVE_ALERTS = """
UPDATE cron_jobs cj SET next_run_at = NULL
FROM kpi_alerts ka
WHERE ka.cron_job_id = cj.id AND NOT ka.is_active AND cj.next_run_at <= %(logical_time)s AND NOT cj.locked
"""

# Alerts made by plain SQL have no next_run_at yet (cron_jobs_uninitialised_idx).
UNINITIALISED_ALERTS = """
SELECT ka.id AS alert_id
FROM cron_jobs cj
JOIN kpi_alerts ka ON ka.cron_job_id = cj.id
WHERE cj.next_run_at IS NULL AND NOT cj.master_locked AND ka.is_active
ORDER BY cj.id
LIMIT %(limit)s
"""

SET_FIRST_RUN = """
UPDATE cron_jobs SET next_run_at = %(next_run_at)s WHERE id = %(cron_job_id)s::kpi_cron_job_id AND next_run_at IS NULL
"""

# First sight in bulk (initialise_first_runs): a page of uninitialised alerts with everything needed to
# compute their first slot, then one UPDATE for the whole page. Pages follow cron_jobs.id, so a row that
# could not be set (a concurrent change) is never read again in the same pass.
UNINITIALISED_ALERT_ROWS = (
    "SELECT "
    + _ALERT_SCALAR_COLUMNS
    + ", NULL::text AS cube_query, NULL::text AS gating_condition\n"
    + _ALERT_TABLES
    + """WHERE cj.next_run_at IS NULL AND NOT cj.master_locked AND ka.is_active
  AND (%(after)s::kpi_cron_job_id IS NULL OR cj.id > %(after)s::kpi_cron_job_id)
ORDER BY cj.id
LIMIT %(limit)s
"""
)

SET_FIRST_RUNS = """
UPDATE cron_jobs cj SET next_run_at = v.next_run_at
FROM unnest(%(cron_job_ids)s::kpi_cron_job_id[], %(next_runs)s::timestamptz[]) AS v(cron_job_id, next_run_at)
WHERE cj.id = v.cron_job_id AND cj.next_run_at IS NULL
"""

# A row one step of the tick could not even read (park_unusable_alert): its slot is recorded failed with
# the reason, under this run (so the run's summary shows red), and the alert is parked until the next
# recheck — it fails once a day until fixed, not on every tick. A slot already recorded stays as it is.
RECORD_UNUSABLE_SLOT = """
WITH job AS (
    SELECT cj.id, coalesce(cj.next_run_at, %(logical_time)s) AS slot
    FROM cron_jobs cj WHERE cj.id = %(cron_job_id)s::kpi_cron_job_id AND NOT cj.locked
    FOR UPDATE SKIP LOCKED
), failed AS (
    INSERT INTO cron_job_results (cron_job_id, kpi_alert_id, organization_id, slot, status, started_at,
                                  finished_at, updated_at, error, details, dag_run_id)
    SELECT job.id, %(alert_id)s, ka.organization_id, job.slot, 'failed', %(now)s, %(now)s, %(now)s,
           %(error)s, %(details)s, %(dag_run_id)s
    FROM job LEFT JOIN kpi_alerts ka ON ka.id = %(alert_id)s
    ON CONFLICT (cron_job_id, slot) DO NOTHING
    RETURNING id
)
UPDATE cron_jobs SET next_run_at = %(park_until)s
WHERE id IN (SELECT id FROM job)
RETURNING (SELECT count(*) FROM failed) AS recorded
"""

# --- one alert --------------------------------------------------------------------------------

_ALERT_COLUMNS = _ALERT_SELECT + "\n" + _ALERT_TABLES

CRON_JOB_OF_ALERT = "SELECT cron_job_id::text AS cron_job_id FROM kpi_alerts WHERE id = %(alert_id)s"

LOAD_ALERT = _ALERT_COLUMNS + "WHERE ka.id = %(alert_id)s"

# A batch's alerts in one round trip (pipeline.batch).
LOAD_ALERTS = _ALERT_COLUMNS + "WHERE ka.id = ANY(%(alert_ids)s::bigint[]) ORDER BY ka.id"

LIST_ALERTS = (
    _ALERT_COLUMNS
    + "WHERE %(organization_id)s::bigint IS NULL OR ka.organization_id = %(organization_id)s ORDER BY ka.id"
)

# The management overview (REST API, UI page, list-alerts): filtered, paged, with each alert's latest
# ledger row (one index probe per listed alert on cron_job_results_slot_key).
ALERT_OVERVIEW = (
    _ALERT_SELECT  # noqa: S608 -- constant fragments of this module joined, no input
    + """,
       last.slot AS last_slot, last.status AS last_status, last.error AS last_error,
       last.finished_at AS last_finished_at
"""
    + _ALERT_TABLES
    + """LEFT JOIN LATERAL (
    SELECT r.slot, r.status, r.error, r.finished_at FROM cron_job_results r
    WHERE r.cron_job_id = ka.cron_job_id AND r.kpi_alert_id IS NOT NULL ORDER BY r.slot DESC LIMIT 1
) last ON true
"""
    + _ALERT_FILTER
    + "ORDER BY ka.id LIMIT %(limit)s OFFSET %(offset)s\n"
)

# ALERT_OVERVIEW's total: the tables its filter reads, no more.
COUNT_ALERTS = (
    """
SELECT count(*) AS n FROM kpi_alerts ka
JOIN cron_jobs cj ON cj.id = ka.cron_job_id
LEFT JOIN kpi_thresholds kt ON kt.kpi_alert_id = ka.id
"""
    + _ALERT_FILTER
)

# --- creation ---------------------------------------------------------------------------------

NEXT_ALERT_ID = "SELECT nextval(pg_get_serial_sequence('kpi_alerts', 'id')) AS id"

INSERT_CRON_JOB = """
INSERT INTO cron_jobs (id, job_name, locked, master_locked, next_run_at)
VALUES (kpi_new_cron_job_id(), %(job_name)s, false, false, %(next_run_at)s)
RETURNING id::text AS id
"""

INSERT_ALERT = """
INSERT INTO kpi_alerts (id, cron_job_id, organization_id, graph_id, dashboard_id, alert_type, alert_name,
                        recipients, is_active, cube_query, owners, dashboard_url, message,
                        locale, currency, percent_scale, column_labels, quiet_from_minute, quiet_until_minute,
                        quiet_days, quiet_reports)
VALUES (%(id)s, %(cron_job_id)s::kpi_cron_job_id, %(organization_id)s, %(graph_id)s, %(dashboard_id)s, %(alert_type)s,
        %(alert_name)s, %(recipients)s, %(is_active)s, %(cube_query)s, %(owners)s, %(dashboard_url)s, %(message)s,
        %(locale)s, %(currency)s, %(percent_scale)s, %(column_labels)s, %(quiet_from_minute)s,
        %(quiet_until_minute)s, %(quiet_days)s::smallint[], %(quiet_reports)s)
"""

INSERT_SCHEDULE = """
INSERT INTO kpi_schedules (kpi_alert_id, frequency_interval, schedule_hour, schedule_minute, selected_days,
                           timezone, gating_condition, attachment_type, cron_expression, every_n_weeks,
                           start_date, business_day, holiday_country, holiday_subdivision, on_holiday,
                           only_if_changed, freshness_source, freshness_asset, freshness_max_age_minutes,
                           freshness_max_wait_minutes)
VALUES (%(kpi_alert_id)s, %(frequency_interval)s, %(schedule_hour)s, %(schedule_minute)s,
        %(selected_days)s::smallint[], %(timezone)s, %(gating_condition)s, %(attachment_type)s,
        %(cron_expression)s, %(every_n_weeks)s, %(start_date)s, %(business_day)s, %(holiday_country)s,
        %(holiday_subdivision)s, %(on_holiday)s, %(only_if_changed)s, %(freshness_source)s, %(freshness_asset)s,
        %(freshness_max_age_minutes)s, %(freshness_max_wait_minutes)s)
"""

INSERT_THRESHOLD = """
INSERT INTO kpi_thresholds (kpi_alert_id, condition, threshold_value, timezone, kpi_measure, rearm_minutes,
                            notify_on_recovery, on_no_data, on_error, check_every_minutes, check_daily_minute,
                            active_days, active_from_minute, active_until_minute, recovery_threshold,
                            pending_checks, recovery_checks, anomaly_method, history_weeks, min_history, group_by)
VALUES (%(kpi_alert_id)s, %(condition)s, %(threshold_value)s, %(timezone)s, %(kpi_measure)s,
        %(rearm_minutes)s, %(notify_on_recovery)s, %(on_no_data)s, %(on_error)s, %(check_every_minutes)s,
        %(check_daily_minute)s, %(active_days)s::smallint[], %(active_from_minute)s, %(active_until_minute)s,
        %(recovery_threshold)s, %(pending_checks)s, %(recovery_checks)s, %(anomaly_method)s, %(history_weeks)s,
        %(min_history)s, %(group_by)s)
"""

# --- the claim and the ledger -----------------------------------------------------------------

# SKIP LOCKED: a claimant never waits on another; the one holding the row decides.
LOCK_CRON_JOB = """
SELECT id, next_run_at, master_locked, locked FROM cron_jobs WHERE id = %(cron_job_id)s::kpi_cron_job_id
FOR UPDATE SKIP LOCKED
"""

# The seed's trigger allows one stamp of last_ran_at_* per UTC hour. A schedule with several slots in one hour
# (cron */15) stamps at its first slot of the hour only: a later slot of the same hour, whose earlier slot is
# in the ledger, is the same job's and leaves the stamp alone ("later_in_hour" below; the claims' two
# disjoint updates "stamped" / "unstamped", as a statement may update a row once). A stamp of this hour made
# by anything else (another worker of the seed's kind) still makes the trigger refuse: the second guard holds.
LATER_SLOT_IN_HOUR = """
SELECT EXISTS (SELECT 1 FROM cron_job_results earlier
                     WHERE earlier.cron_job_id = %(cron_job_id)s::kpi_cron_job_id AND earlier.slot < %(slot)s::timestamptz
                       AND earlier.slot >= date_trunc('hour', %(slot)s::timestamptz, 'UTC')) AS later
"""

# claim_slot() in one round trip for the common case: a due slot inside the misfire window that was
# never claimed. Anything else (busy, not due, a misfire, an earlier claim) returns no row, and the
# trigger may raise; claim_slot() then takes the step-by-step path, which handles every case.
# The claims' mark on cron_jobs, shared by CLAIM_FRESH_SLOT and CLAIM_FRESH_SLOTS (each puts it after its own
# `job` and `claim` CTEs). `stamps` is the seed's stamp rule, decided once per statement: not a later slot of an
# already stamped hour (LATER_SLOT_IN_HOUR), and not where the backend's trigger would then freeze the row
# (kpi_stamps_cron_jobs(), migration 0001b). Two disjoint updates, as a statement may update a row once and
# prevent_multiple_updates fires on `UPDATE OF last_ran_at_*` whether or not the value changes.
_MARK_CLAIMED_JOBS = """, policy AS MATERIALIZED (
    SELECT kpi_stamps_cron_jobs() AS stamps
), marking AS (
    SELECT claim.cron_job_id, claim.slot, (NOT job.later_in_hour AND policy.stamps) AS stamps
    FROM claim JOIN job ON job.id = claim.cron_job_id CROSS JOIN policy
), stamped AS (
    UPDATE cron_jobs
    SET locked = true,
        last_ran_at_date = (marking.slot AT TIME ZONE 'UTC')::date,
        last_ran_at_hour = extract(hour FROM marking.slot AT TIME ZONE 'UTC'),
        last_ran_at_minute = extract(minute FROM marking.slot AT TIME ZONE 'UTC')
    FROM marking
    WHERE cron_jobs.id = marking.cron_job_id AND marking.stamps
    RETURNING cron_jobs.id
), unstamped AS (
    UPDATE cron_jobs SET locked = true
    FROM marking
    WHERE cron_jobs.id = marking.cron_job_id AND NOT marking.stamps
    RETURNING cron_jobs.id
), marked AS (
    SELECT id FROM stamped UNION ALL SELECT id FROM unstamped
)
"""

# claim_slot() in one round trip for the common case: a due slot inside the misfire window that was
# never claimed. Anything else (busy, not due, a misfire, an earlier claim) returns no row, and the
# trigger may raise; claim_slot() then takes the step-by-step path, which handles every case.
CLAIM_FRESH_SLOT = (
    """
WITH job AS (
    SELECT cj.id, cj.next_run_at AS slot,
           EXISTS (SELECT 1 FROM cron_job_results earlier
                     WHERE earlier.cron_job_id = cj.id AND earlier.slot < cj.next_run_at
                       AND earlier.slot >= date_trunc('hour', cj.next_run_at, 'UTC')) AS later_in_hour
    FROM cron_jobs cj
    WHERE cj.id = %(cron_job_id)s::kpi_cron_job_id AND NOT cj.master_locked
      AND cj.next_run_at <= %(logical_time)s AND cj.next_run_at >= %(oldest_slot)s
    FOR UPDATE OF cj SKIP LOCKED
), claim AS (
    INSERT INTO cron_job_results (cron_job_id, kpi_alert_id, organization_id, slot, status, started_at, updated_at,
                                  claim_token, claimed_by, lease_expires_at, dag_run_id, task_instance, try_number)
    SELECT id, %(alert_id)s, %(organization_id)s, slot, 'claimed', %(now)s, %(now)s, %(token)s, %(claimed_by)s,
           %(lease_expires_at)s, %(dag_run_id)s, %(task_instance)s, %(try_number)s
    FROM job
    ON CONFLICT (cron_job_id, slot) DO NOTHING
    RETURNING id, attempts, slot, cron_job_id, message_token
)"""  # noqa: S608 -- constant fragments of this module joined, no input
    + _MARK_CLAIMED_JOBS
    + """SELECT claim.id, claim.attempts, claim.slot, claim.message_token
FROM claim JOIN marked ON marked.id = claim.cron_job_id
"""
)

# CLAIM_FRESH_SLOT for a whole batch in one statement (claims.claim_fresh_slots): the rows another
# claimant holds are skipped (SKIP LOCKED, so no statement waits and lock order cannot deadlock), and rows
# whose hour prevent_multiple_updates() would refuse are left out, so the trigger never fails the batch;
# every alert without a row back takes the step-by-step path (claim_slot), which handles every case.
CLAIM_FRESH_SLOTS = (
    """
WITH wanted AS (
    SELECT * FROM unnest(%(cron_job_ids)s::kpi_cron_job_id[], %(alert_ids)s::bigint[], %(organization_ids)s::bigint[],
                         %(tokens)s::uuid[]) AS w(cron_job_id, alert_id, organization_id, token)
), candidate AS (
    SELECT cj.id, cj.next_run_at AS slot,
           EXISTS (SELECT 1 FROM cron_job_results earlier
                     WHERE earlier.cron_job_id = cj.id AND earlier.slot < cj.next_run_at
                       AND earlier.slot >= date_trunc('hour', cj.next_run_at, 'UTC')) AS later_in_hour,
           (cj.last_ran_at_date IS DISTINCT FROM (cj.next_run_at AT TIME ZONE 'UTC')::date
            OR cj.last_ran_at_hour IS DISTINCT FROM extract(hour FROM cj.next_run_at AT TIME ZONE 'UTC'))
               AS hour_not_stamped
    FROM cron_jobs cj
    WHERE cj.id IN (SELECT cron_job_id FROM wanted) AND NOT cj.master_locked
      AND cj.next_run_at <= %(logical_time)s AND cj.next_run_at >= %(oldest_slot)s
    FOR UPDATE OF cj SKIP LOCKED
), job AS (
    SELECT id, slot, later_in_hour FROM candidate WHERE later_in_hour OR hour_not_stamped
), claim AS (
    INSERT INTO cron_job_results (cron_job_id, kpi_alert_id, organization_id, slot, status, started_at, updated_at,
                                  claim_token, claimed_by, lease_expires_at, dag_run_id, task_instance, try_number)
    SELECT job.id, wanted.alert_id, wanted.organization_id, job.slot, 'claimed', %(now)s, %(now)s, wanted.token,
           %(claimed_by)s, %(lease_expires_at)s, %(dag_run_id)s, %(task_instance)s, %(try_number)s
    FROM job JOIN wanted ON wanted.cron_job_id = job.id
    ON CONFLICT (cron_job_id, slot) DO NOTHING
    RETURNING id, attempts, slot, cron_job_id, claim_token, message_token
)"""  # noqa: S608 -- constant fragments of this module joined, no input
    + _MARK_CLAIMED_JOBS
    + """SELECT claim.id, claim.attempts, claim.slot, claim.cron_job_id::text AS cron_job_id, claim.claim_token,
       claim.message_token
FROM claim JOIN marked ON marked.id = claim.cron_job_id
"""
)

INSERT_CLAIM = """
INSERT INTO cron_job_results (cron_job_id, kpi_alert_id, organization_id, slot, status, started_at, updated_at,
                              claim_token, claimed_by, lease_expires_at, dag_run_id, task_instance, try_number)
VALUES (%(cron_job_id)s::kpi_cron_job_id, %(alert_id)s, %(organization_id)s, %(slot)s, 'claimed', %(now)s, %(now)s,
        %(token)s, %(claimed_by)s, %(lease_expires_at)s, %(dag_run_id)s, %(task_instance)s, %(try_number)s)
ON CONFLICT (cron_job_id, slot) DO NOTHING
RETURNING id, attempts, message_token
"""

# A later slot of an hour already stamped by the same job's earlier slot (see LATER_SLOT_IN_HOUR).
MARK_CRON_JOB_CLAIMED_UNSTAMPED = (
    "UPDATE cron_jobs SET locked = true, next_run_at = %(slot)s WHERE id = %(cron_job_id)s::kpi_cron_job_id"
)

# The step-by-step claim's mark on an hour not yet stamped by the job: the seed's stamp, where the backend's
# trigger lets it (kpi_stamps_cron_jobs(), read once: see _MARK_CLAIMED_JOBS).
MARK_CRON_JOB_CLAIMED = """
UPDATE cron_jobs
SET locked = true, next_run_at = %(slot)s,
    last_ran_at_date = CASE WHEN policy.stamps THEN %(date)s ELSE last_ran_at_date END,
    last_ran_at_hour = CASE WHEN policy.stamps THEN %(hour)s ELSE last_ran_at_hour END,
    last_ran_at_minute = CASE WHEN policy.stamps THEN %(minute)s ELSE last_ran_at_minute END
FROM (SELECT kpi_stamps_cron_jobs() AS stamps) policy
WHERE id = %(cron_job_id)s::kpi_cron_job_id
"""

# Finishing (advancing first) or releasing a claim locks the cron_jobs row *before* the ledger row, in the
# order a claim does (cron_jobs, then ledger): the other order deadlocks against a concurrent claimant.
LOCK_CRON_JOB_WAIT = "SELECT id FROM cron_jobs WHERE id = %(cron_job_id)s::kpi_cron_job_id FOR UPDATE"

LOCK_LEDGER_ROW = """
SELECT id, status, claim_token, claimed_by, lease_expires_at, attempts, takeovers, dag_run_id, task_instance,
       try_number
FROM cron_job_results WHERE cron_job_id = %(cron_job_id)s::kpi_cron_job_id AND slot = %(slot)s
FOR UPDATE
"""

# One attempt that did not finish its slot, as an attempt_history entry (the row's values before the update).
_ATTEMPT_ENTRY = """jsonb_build_array(jsonb_build_object(
    'attempt', attempts, 'try_number', try_number, 'claimed_by', claimed_by, 'dag_run_id', dag_run_id,
    'at', %(now)s::timestamptz, 'error', {error}))"""

TAKE_OVER_CLAIM = (
    """
UPDATE cron_job_results
SET attempt_history = CASE WHEN %(note)s::text IS NULL THEN attempt_history
                           ELSE attempt_history || """
    + _ATTEMPT_ENTRY.format(error="%(note)s::text")
    + """ END,
    status = 'claimed', claim_token = %(token)s, claimed_by = %(claimed_by)s,
    lease_expires_at = %(lease_expires_at)s, dag_run_id = %(dag_run_id)s, task_instance = %(task_instance)s,
    try_number = %(try_number)s, attempts = attempts + 1, takeovers = takeovers + %(takeover)s,
    updated_at = %(now)s,
    error = CASE WHEN %(note)s::text IS NULL THEN error ELSE concat_ws(E'\\n', error, %(note)s::text) END
WHERE id = %(result_id)s
RETURNING id, attempts, message_token
"""
)

# A cleared task instance (a later try of the same DAG run): this alert's slot in the run, the one left
# unsent first — ended unsent (%(ended_unsent)s: failed, retrying), or still held (%(active)s) by an
# earlier try of the same task instance — by an attempt other than this very one (same task instance,
# same try).
RUN_SLOT_OF_ALERT = """
SELECT slot, status,
       coalesce((status = ANY(%(ended_unsent)s::text[])
                 OR (status = ANY(%(active)s::text[]) AND task_instance = %(task_instance)s
                     AND try_number < %(try_number)s))
                AND NOT (task_instance IS NOT DISTINCT FROM %(task_instance)s
                         AND try_number IS NOT DISTINCT FROM %(try_number)s), false) AS unsent
FROM cron_job_results
WHERE cron_job_id = %(cron_job_id)s::kpi_cron_job_id AND dag_run_id = %(dag_run_id)s
ORDER BY unsent DESC, slot DESC LIMIT 1
"""

# A DAG run cleared as a whole (its due listing runs again, as a later try): the alerts whose slot in
# this run was left unsent (%(reattempted)s) — they are no longer due, so the due query alone would not
# list them.
UNSENT_ALERTS_OF_RUN = """
SELECT ka.id AS alert_id, ka.alert_name, cj.id::text AS cron_job_id, r.slot
FROM cron_job_results r
JOIN cron_jobs cj ON cj.id = r.cron_job_id
JOIN kpi_alerts ka ON ka.cron_job_id = cj.id
WHERE r.dag_run_id = %(dag_run_id)s AND r.status = ANY(%(reattempted)s::text[])
  AND NOT cj.master_locked AND ka.is_active
ORDER BY r.slot, cj.id
LIMIT %(limit)s
"""

# A threshold alert's later evaluation supersedes an earlier slot (it measures the current value); a slot
# in %(not_evaluated)s (missed, skipped) measured nothing.
LATER_EVALUATED_SLOT = """
SELECT slot, status FROM cron_job_results
WHERE cron_job_id = %(cron_job_id)s::kpi_cron_job_id AND slot > %(slot)s
  AND status <> ALL(%(not_evaluated)s::text[])
ORDER BY slot LIMIT 1
"""

# Run a finished slot again: the earlier outcome goes to attempt_history; a claimant without a DAG run
# (the CLI) keeps the run the row belongs to, so that run's summary still counts it.
REATTEMPT_CLAIM = """
UPDATE cron_job_results
SET attempt_history = attempt_history || jsonb_build_array(jsonb_build_object(
        'attempt', attempts, 'try_number', try_number, 'claimed_by', claimed_by, 'dag_run_id', dag_run_id,
        'at', %(now)s::timestamptz, 'status', status, 'error', error)),
    status = 'claimed', claim_token = %(token)s, claimed_by = %(claimed_by)s,
    lease_expires_at = %(lease_expires_at)s, dag_run_id = coalesce(%(dag_run_id)s, dag_run_id),
    task_instance = %(task_instance)s, try_number = %(try_number)s, attempts = attempts + 1,
    updated_at = %(now)s, finished_at = NULL, error = NULL
WHERE id = %(result_id)s
RETURNING id, attempts, message_token
"""

SET_CRON_JOB_LOCKED = "UPDATE cron_jobs SET locked = %(locked)s WHERE id = %(cron_job_id)s::kpi_cron_job_id"

ADVANCE_CRON_JOB = """
UPDATE cron_jobs SET locked = false, next_run_at = %(next_run_at)s WHERE id = %(cron_job_id)s::kpi_cron_job_id
"""

RECORD_UNCLAIMED_RESULT = """
INSERT INTO cron_job_results (cron_job_id, kpi_alert_id, organization_id, slot, status, started_at,
                              finished_at, updated_at, error, details, dag_run_id)
VALUES (%(cron_job_id)s::kpi_cron_job_id, %(alert_id)s, %(organization_id)s, %(slot)s, %(status)s, %(now)s, %(now)s, %(now)s,
        %(error)s, %(details)s, %(dag_run_id)s)
ON CONFLICT (cron_job_id, slot) DO UPDATE
-- A claim abandoned on that slot (its worker died, e.g. with the scheduler that then stayed down past
-- the misfire window) is closed too, and fenced off (token cleared): a dead delivery is recorded as
-- delivery_unknown (never resent), a slot still failing transiently when the window closed as failed;
-- the run that closes it owns the row (its summary shows it).
SET status = CASE cron_job_results.status WHEN 'sending' THEN 'delivery_unknown'
                                          WHEN 'retrying' THEN 'failed'
                                          ELSE EXCLUDED.status END,
    finished_at = EXCLUDED.finished_at, updated_at = EXCLUDED.updated_at, lease_expires_at = NULL,
    claim_token = NULL, details = EXCLUDED.details, dag_run_id = EXCLUDED.dag_run_id,
    error = CASE WHEN cron_job_results.status = 'retrying'
                 THEN concat_ws(E'\\n', cron_job_results.error,
                                'gave up after ' || cron_job_results.attempts || ' attempt(s): still failing '
                                || 'when the slot''s misfire window closed')
                 ELSE concat_ws(E'\\n', cron_job_results.error,
                                'abandoned by ' || cron_job_results.claimed_by || ' (' || cron_job_results.status
                                || ')', EXCLUDED.error) END
WHERE cron_job_results.status = ANY(%(resumed)s::text[])
  AND (cron_job_results.lease_expires_at IS NULL OR cron_job_results.lease_expires_at <= EXCLUDED.updated_at)
"""

# Every write below is fenced by the claim token: a worker whose lease was taken over changes nothing.
# Nothing is sent for an alert paused or deleted meanwhile (both set master_locked): FOR SHARE waits for
# a change being committed on the cron_jobs row, then sees it — a pause acknowledged first stops the send.
MARK_SENDING = """
WITH job AS (
    SELECT id FROM cron_jobs WHERE id = %(cron_job_id)s::kpi_cron_job_id AND NOT master_locked FOR SHARE
)
UPDATE cron_job_results SET status = 'sending', lease_expires_at = %(lease_expires_at)s, updated_at = %(now)s
WHERE id = %(result_id)s AND claim_token = %(token)s AND status = 'claimed' AND EXISTS (SELECT 1 FROM job)
"""

# Why MARK_SENDING changed nothing: the claim is no longer ours, or the alert was paused or deleted.
WHY_NOT_SENDING = """
SELECT r.claim_token = %(token)s AND r.status = 'claimed' AS ours, cj.master_locked,
       EXISTS (SELECT 1 FROM kpi_alerts ka WHERE ka.cron_job_id = cj.id) AS alert_exists
FROM cron_job_results r JOIN cron_jobs cj ON cj.id = r.cron_job_id
WHERE r.id = %(result_id)s
"""

# The alert was paused or deleted while its slot was in flight: the slot ends 'skipped', unsent. The
# alert's next run is the change's to decide (a pause keeps it, a deletion clears it).
STOP_BEFORE_SENDING = """
WITH result AS (
    UPDATE cron_job_results
    SET status = 'skipped', finished_at = %(now)s, updated_at = %(now)s, lease_expires_at = NULL, error = %(error)s
    WHERE id = %(result_id)s AND claim_token = %(token)s AND status = 'claimed'
    RETURNING cron_job_id
)
UPDATE cron_jobs SET locked = false WHERE id IN (SELECT cron_job_id FROM result)
"""

# A slot of the alert a worker is on right now (%(active)s, its lease running): a change does not reach it.
IN_FLIGHT_SLOT = """
SELECT slot, status FROM cron_job_results
WHERE cron_job_id = %(cron_job_id)s::kpi_cron_job_id AND status = ANY(%(active)s::text[])
  AND lease_expires_at > %(now)s
ORDER BY slot DESC LIMIT 1
"""

# The SMTP server refused before accepting: nothing went out, so the claim may try again.
UNDO_SENDING = """
UPDATE cron_job_results SET status = 'claimed' WHERE id = %(result_id)s AND claim_token = %(token)s
"""

# The server took the message for some recipients and refused others: back to 'claimed' (the failure
# is then recorded or released like any other), with who has it in details.delivered_to, kept across
# the slot's attempts so that no later attempt sends to them again.
RECORD_PARTIAL_DELIVERY = """
UPDATE cron_job_results
SET status = 'claimed', updated_at = %(now)s,
    details = coalesce(details, '{}'::jsonb) || jsonb_build_object(
        'delivered_to', coalesce(details -> 'delivered_to', '[]'::jsonb) || %(delivered)s::jsonb)
WHERE id = %(result_id)s AND claim_token = %(token)s AND status = 'sending'
"""

DELIVERED_TO = (
    "SELECT details -> 'delivered_to' AS delivered_to FROM cron_job_results WHERE id = %(result_id)s"
)


# finish_claim() in one round trip: the cron_jobs row is locked first (a claim's lock order; the other
# order deadlocks against a concurrent claimant), the ledger row is written only if the claim is
# still ours (fencing token), and only then do the alert move on and a threshold alert's state
# (when %(state)s is given) change — all in the same transaction.
FINISH_SLOT = """
WITH job AS (
    SELECT id FROM cron_jobs WHERE id = %(cron_job_id)s::kpi_cron_job_id FOR UPDATE
), result AS (
    UPDATE cron_job_results
    SET status = %(status)s, finished_at = %(now)s, updated_at = %(now)s, lease_expires_at = NULL,
        value = %(value)s, previous_value = %(previous_value)s, recipients = %(recipients)s,
        -- who already has the slot's message (a partial delivery) stays recorded whatever the outcome says
        details = CASE WHEN cron_job_results.details ? 'delivered_to'
                       THEN jsonb_build_object('delivered_to', cron_job_results.details -> 'delivered_to')
                            || coalesce(%(details)s::jsonb, '{}'::jsonb)
                       ELSE %(details)s::jsonb END,
        attachment = %(attachment)s, attachment_bytes = %(attachment_bytes)s, delivery = %(delivery)s,
        message_id = %(message_id)s,
        -- a taken-over row keeps its history ("taken over from <worker> ...") in front of the outcome's error
        error = CASE WHEN takeovers > 0 THEN nullif(concat_ws(E'\\n', error, %(error)s::text), '')
                     ELSE %(error)s::text END
    WHERE id = %(result_id)s AND claim_token = %(token)s
      AND EXISTS (SELECT 1 FROM job)
    RETURNING id
), advanced AS (
    -- A next run later than the slot was set by a change made during the claim (update, resume): it stands.
    UPDATE cron_jobs
    SET locked = false,
        next_run_at = CASE WHEN next_run_at > %(slot)s THEN next_run_at ELSE %(next_run_at)s END
    WHERE id = %(cron_job_id)s::kpi_cron_job_id AND EXISTS (SELECT 1 FROM result)
    RETURNING id
), threshold_state AS (
    UPDATE kpi_thresholds
    SET state = %(state)s, last_value = %(last_value)s, last_evaluated_at = %(now)s,
        last_notified_at = %(last_notified_at)s, streak = %(streak)s,
        state_changed_at = CASE WHEN state <> %(state)s THEN %(now)s ELSE state_changed_at END,
        updated_at = %(now)s
    WHERE kpi_alert_id = %(alert_id)s AND %(state)s::text IS NOT NULL AND EXISTS (SELECT 1 FROM result)
    RETURNING id
)
SELECT count(*) AS finished FROM result
"""

MARK_SKIPPED = """
UPDATE cron_job_results
SET status = 'skipped', finished_at = %(now)s, updated_at = %(now)s, lease_expires_at = NULL, error = %(error)s
WHERE id = %(result_id)s
"""

RELEASE_FOR_RETRY = (
    """
UPDATE cron_job_results
SET status = 'retrying', lease_expires_at = NULL, updated_at = %(now)s, error = %(error)s,
    attempt_history = attempt_history || """
    + _ATTEMPT_ENTRY.format(error="%(error)s::text")
    + """
WHERE id = %(result_id)s AND claim_token = %(token)s AND status = 'claimed'
"""
)

# A report waiting for fresh data gives its claim back (outcomes.wait_for_fresh_data); the alert's next_run_at
# stays on the slot, so the next tick claims this row again (TAKE_OVER_CLAIM) and looks at the data again.
WAIT_FOR_FRESH_DATA = """
UPDATE cron_job_results
SET status = 'waiting', lease_expires_at = NULL, updated_at = %(now)s, error = %(error)s,
    details = coalesce(details, '{}'::jsonb) || %(details)s::jsonb
WHERE id = %(result_id)s AND claim_token = %(token)s AND status = 'claimed'
"""

# Waiting slots whose alert moved on without them — paused (the paused slot was recorded and next_run_at
# moved past it), updated to another schedule, deleted: the slot is over, recorded skipped with the reason.
# A waiting slot's alert keeps next_run_at on the slot; nothing else leaves it there.
CLOSE_ABANDONED_WAITS = """
UPDATE cron_job_results r
SET status = 'skipped', finished_at = %(now)s, updated_at = %(now)s,
    details = coalesce(r.details, '{}'::jsonb) || jsonb_build_object('reason',
        CASE WHEN cj.master_locked AND ka.id IS NULL THEN 'deleted'
             WHEN cj.master_locked THEN 'paused' ELSE 'changed' END),
    error = CASE WHEN cj.master_locked AND ka.id IS NULL THEN 'the alert was deleted'
                 WHEN cj.master_locked THEN 'paused by an operator'
                 ELSE 'the alert was changed' END || ' while its slot waited for fresh data; not sent'
FROM cron_jobs cj LEFT JOIN kpi_alerts ka ON ka.cron_job_id = cj.id
WHERE r.status = 'waiting' AND r.kpi_alert_id IS NOT NULL AND cj.id = r.cron_job_id AND NOT cj.locked
  AND cj.next_run_at IS DISTINCT FROM r.slot
"""

# The slot before this one: failure notices go out on the first failure of a streak only.
# The data digest of the alert's latest report sent before the slot (reports only if changed).
LAST_SENT_DIGEST = """
SELECT slot, details->>'data_digest' AS digest FROM cron_job_results
WHERE cron_job_id = %(cron_job_id)s::kpi_cron_job_id AND kpi_alert_id IS NOT NULL AND slot < %(slot)s
  AND status = 'sent'
ORDER BY slot DESC LIMIT 1
"""

# Per-group checks: the groups' stored states (a group without a row is OK).
GROUP_STATES = """
SELECT group_key, state, last_notified_at, streak FROM kpi_threshold_groups WHERE kpi_alert_id = %(alert_id)s
"""

# The groups' new states, written with the ledger row (finish_claim); a group back to OK with nothing
# pending is deleted (absent means OK), so the table holds the groups that need remembering.
WRITE_GROUP_STATES = """
WITH incoming AS (
    SELECT * FROM unnest(%(groups)s::text[], %(states)s::text[], %(values)s::numeric[],
                         %(notified)s::timestamptz[], %(streaks)s::integer[])
        AS g(group_key, state, last_value, last_notified_at, streak)
), settled AS (
    DELETE FROM kpi_threshold_groups t USING incoming i
    WHERE t.kpi_alert_id = %(alert_id)s AND t.group_key = i.group_key AND i.state = 'OK' AND i.streak = 0
)
INSERT INTO kpi_threshold_groups (kpi_alert_id, group_key, state, last_value, last_notified_at, streak, updated_at)
SELECT %(alert_id)s, group_key, state, last_value, last_notified_at, streak, %(now)s FROM incoming
WHERE NOT (state = 'OK' AND streak = 0)
ON CONFLICT (kpi_alert_id, group_key) DO UPDATE
SET state = excluded.state, last_value = excluded.last_value, last_notified_at = excluded.last_notified_at,
    streak = excluded.streak, updated_at = excluded.updated_at
"""

PREVIOUS_RESULT = """
SELECT status FROM cron_job_results
WHERE cron_job_id = %(cron_job_id)s::kpi_cron_job_id AND slot < %(slot)s AND status <> 'missed'
ORDER BY slot DESC LIMIT 1
"""

# How late this run's sends were (finished_at is the claimant's clock, slot the alert's schedule).
RUN_LATENESS = """
SELECT max(finished_at - slot) AS latest, percentile_cont(0.5) WITHIN GROUP (ORDER BY finished_at - slot) AS median
FROM cron_job_results WHERE dag_run_id = %(run_id)s AND status = 'sent'
"""

# Alerts still due at the run's logical time once its tasks are over (an overloaded tick's remainder); a
# report waiting for fresh data is due on purpose (the next tick looks again) and is not counted.
STILL_DUE = """
SELECT count(*) AS n, min(cj.next_run_at) AS oldest_slot
FROM cron_jobs cj JOIN kpi_alerts ka ON ka.cron_job_id = cj.id
WHERE cj.next_run_at <= %(logical_time)s AND NOT cj.master_locked AND ka.is_active
  AND NOT EXISTS (SELECT 1 FROM cron_job_results r WHERE r.cron_job_id = cj.id AND r.slot = cj.next_run_at
                  AND r.status = 'waiting')
"""

RUN_SUMMARY = """
SELECT status, count(*) AS n FROM cron_job_results
WHERE dag_run_id = %(run_id)s AND kpi_alert_id IS NOT NULL GROUP BY status
"""

# By cron_job_id, so a deleted alert's ledger (kept for audit) stays readable.
# The history's filter (ALERT_HISTORY, COUNT_HISTORY): one alert's rows, of one status if given.
_HISTORY_FILTER = """WHERE r.cron_job_id = %(cron_job_id)s::kpi_cron_job_id AND r.kpi_alert_id IS NOT NULL
  AND (%(status)s::text IS NULL OR r.status = %(status)s)
"""

ALERT_HISTORY = (
    """
SELECT r.slot, r.status, r.value, r.previous_value, r.error, r.attachment, r.attachment_bytes, r.delivery,
       r.recipients, r.started_at, r.finished_at, r.dag_run_id, r.task_instance, r.try_number, r.attempts,
       r.details, r.attempt_history
FROM cron_job_results r
"""
    + _HISTORY_FILTER
    + "ORDER BY r.slot DESC LIMIT %(limit)s OFFSET %(offset)s\n"
)

COUNT_HISTORY = "SELECT count(*) AS n FROM cron_job_results r\n" + _HISTORY_FILTER  # noqa: S608 -- constants

# --- the lifecycle: update, pause / resume, delete, events ------------------------------------

# The row a change works on, locked so that a concurrent change (or claim) is serialised with it.
LOCK_ALERT_FOR_CHANGE = """
SELECT cj.id, cj.locked, cj.master_locked, cj.next_run_at
FROM kpi_alerts ka JOIN cron_jobs cj ON cj.id = ka.cron_job_id
WHERE ka.id = %(alert_id)s
FOR UPDATE OF cj, ka
"""

UPDATE_ALERT = """
UPDATE kpi_alerts
SET organization_id = %(organization_id)s, graph_id = %(graph_id)s, dashboard_id = %(dashboard_id)s,
    alert_name = %(alert_name)s, recipients = %(recipients)s, is_active = %(is_active)s,
    cube_query = %(cube_query)s, owners = %(owners)s, dashboard_url = %(dashboard_url)s, message = %(message)s,
    locale = %(locale)s, currency = %(currency)s, percent_scale = %(percent_scale)s,
    column_labels = %(column_labels)s, quiet_from_minute = %(quiet_from_minute)s,
    quiet_until_minute = %(quiet_until_minute)s, quiet_days = %(quiet_days)s::smallint[],
    quiet_reports = %(quiet_reports)s, updated_at = %(now)s
WHERE id = %(id)s
"""

UPDATE_SCHEDULE = """
UPDATE kpi_schedules
SET frequency_interval = %(frequency_interval)s, schedule_hour = %(schedule_hour)s,
    schedule_minute = %(schedule_minute)s, selected_days = %(selected_days)s::smallint[],
    timezone = %(timezone)s, gating_condition = %(gating_condition)s, attachment_type = %(attachment_type)s,
    cron_expression = %(cron_expression)s, every_n_weeks = %(every_n_weeks)s, start_date = %(start_date)s,
    business_day = %(business_day)s, holiday_country = %(holiday_country)s,
    holiday_subdivision = %(holiday_subdivision)s, on_holiday = %(on_holiday)s,
    only_if_changed = %(only_if_changed)s, freshness_source = %(freshness_source)s,
    freshness_asset = %(freshness_asset)s, freshness_max_age_minutes = %(freshness_max_age_minutes)s,
    freshness_max_wait_minutes = %(freshness_max_wait_minutes)s, updated_at = %(now)s
WHERE kpi_alert_id = %(kpi_alert_id)s
"""

UPDATE_THRESHOLD = """
UPDATE kpi_thresholds
SET condition = %(condition)s, threshold_value = %(threshold_value)s, timezone = %(timezone)s,
    kpi_measure = %(kpi_measure)s, rearm_minutes = %(rearm_minutes)s,
    notify_on_recovery = %(notify_on_recovery)s, on_no_data = %(on_no_data)s, on_error = %(on_error)s,
    check_every_minutes = %(check_every_minutes)s, check_daily_minute = %(check_daily_minute)s,
    active_days = %(active_days)s::smallint[], active_from_minute = %(active_from_minute)s,
    active_until_minute = %(active_until_minute)s,
    recovery_threshold = %(recovery_threshold)s, pending_checks = %(pending_checks)s,
    recovery_checks = %(recovery_checks)s, anomaly_method = %(anomaly_method)s,
    history_weeks = %(history_weeks)s, min_history = %(min_history)s, group_by = %(group_by)s,
    updated_at = %(now)s
WHERE kpi_alert_id = %(kpi_alert_id)s
"""

# What is measured, or against what, changed: the anti-spam state starts again from OK (each group's too).
RESET_THRESHOLD_STATE = """
WITH groups AS (DELETE FROM kpi_threshold_groups WHERE kpi_alert_id = %(kpi_alert_id)s)
UPDATE kpi_thresholds
SET state = 'OK', last_value = NULL, last_notified_at = NULL, last_evaluated_at = NULL, streak = 0,
    state_changed_at = %(now)s
WHERE kpi_alert_id = %(kpi_alert_id)s
"""

SET_NEXT_RUN = (
    "UPDATE cron_jobs SET next_run_at = %(next_run_at)s WHERE id = %(cron_job_id)s::kpi_cron_job_id"
)

SET_PAUSED = """
UPDATE cron_jobs SET master_locked = %(paused)s, next_run_at = coalesce(%(next_run_at)s, next_run_at)
WHERE id = %(cron_job_id)s::kpi_cron_job_id
"""

# Pausing many (an organization, or every KPI alert — never the database's other cron jobs).
PAUSE_ALERTS = """
UPDATE cron_jobs cj SET master_locked = true
FROM kpi_alerts ka
WHERE ka.cron_job_id = cj.id AND NOT cj.master_locked
  AND (%(organization_id)s::bigint IS NULL OR ka.organization_id = %(organization_id)s)
RETURNING ka.id AS alert_id, ka.organization_id, cj.id::text AS cron_job_id
"""

LOCK_PAUSED_ALERTS = """
SELECT ka.id AS alert_id FROM kpi_alerts ka JOIN cron_jobs cj ON cj.id = ka.cron_job_id
WHERE cj.master_locked AND (%(organization_id)s::bigint IS NULL OR ka.organization_id = %(organization_id)s)
ORDER BY ka.id
FOR UPDATE OF cj
"""

RESUME_ALERTS = """
UPDATE cron_jobs cj SET master_locked = false, next_run_at = v.next_run_at
FROM unnest(%(cron_job_ids)s::kpi_cron_job_id[], %(next_runs)s::timestamptz[]) AS v(cron_job_id, next_run_at)
WHERE cj.id = v.cron_job_id
"""

# Deleting keeps the cron_jobs row as a paused tombstone, so the ledger rows that reference it stay
# (cron_job_results.cron_job_id cascades from cron_jobs, and may be the user's own table).
DELETE_ALERT = "DELETE FROM kpi_alerts WHERE id = %(alert_id)s"

TOMBSTONE_CRON_JOB = """
UPDATE cron_jobs SET master_locked = true, next_run_at = NULL WHERE id = %(cron_job_id)s::kpi_cron_job_id
"""

COUNT_LEDGER_ROWS = """
SELECT count(*) AS n FROM cron_job_results WHERE cron_job_id = %(cron_job_id)s::kpi_cron_job_id AND kpi_alert_id IS NOT NULL
"""

INSERT_EVENT = """
INSERT INTO kpi_alert_events (kpi_alert_id, cron_job_id, organization_id, action, actor, at, definition, details)
VALUES (%(alert_id)s, %(cron_job_id)s::kpi_cron_job_id, %(organization_id)s, %(action)s, %(actor)s, %(now)s, %(definition)s,
        %(details)s)
"""

INSERT_EVENTS = """
INSERT INTO kpi_alert_events (kpi_alert_id, cron_job_id, organization_id, action, actor, at)
SELECT v.alert_id, v.cron_job_id, v.organization_id, %(action)s, %(actor)s, %(now)s
FROM unnest(%(alert_ids)s::bigint[], %(cron_job_ids)s::kpi_cron_job_id[], %(organization_ids)s::bigint[])
     AS v(alert_id, cron_job_id, organization_id)
"""

ALERT_EVENTS = """
SELECT action, actor, at, details FROM kpi_alert_events
WHERE kpi_alert_id = %(alert_id)s ORDER BY at DESC, id DESC LIMIT %(limit)s
"""

DELETED_ALERT = """
SELECT cron_job_id::text AS cron_job_id, definition, at FROM kpi_alert_events
WHERE kpi_alert_id = %(alert_id)s AND action = 'deleted' ORDER BY id DESC LIMIT 1
"""

# Paused alerts whose slot came due (cron_jobs_paused_due_idx): each is recorded as skipped and moved on.
PAUSED_DUE_ALERTS = """
SELECT ka.id AS alert_id, cj.id::text AS cron_job_id FROM cron_jobs cj JOIN kpi_alerts ka ON ka.cron_job_id = cj.id
WHERE cj.master_locked AND cj.next_run_at <= %(logical_time)s AND NOT cj.locked
ORDER BY cj.next_run_at, cj.id
LIMIT %(limit)s
"""

RECORD_PAUSED_SLOT = """
WITH job AS (
    SELECT id FROM cron_jobs
    WHERE id = %(cron_job_id)s::kpi_cron_job_id AND master_locked AND next_run_at = %(slot)s AND NOT locked
    FOR UPDATE SKIP LOCKED
), skipped AS (
    INSERT INTO cron_job_results (cron_job_id, kpi_alert_id, organization_id, slot, status, started_at,
                                  finished_at, updated_at, error, details, dag_run_id)
    SELECT id, %(alert_id)s, %(organization_id)s, %(slot)s, 'skipped', %(now)s, %(now)s, %(now)s,
           'paused by an operator', '{"reason": "paused"}', %(dag_run_id)s
    FROM job
    ON CONFLICT (cron_job_id, slot) DO NOTHING
    RETURNING id
)
UPDATE cron_jobs SET next_run_at = %(next_run_at)s
WHERE id IN (SELECT id FROM job)
RETURNING (SELECT count(*) FROM skipped) AS recorded
"""

# retention.prune_results(): created_at is the database's wall clock, so is the cut-off (like with like).
# The product's rows only (kpi_alert_id): the backend's other jobs keep their history. A slot not finished
# (%(unfinished)s: claimed, retrying, waiting, sending) is never pruned.
PRUNE_RESULTS = """
DELETE FROM cron_job_results
WHERE kpi_alert_id IS NOT NULL AND created_at < now() - make_interval(secs => %(retention_seconds)s)
  AND status <> ALL(%(unfinished)s::text[])
  AND (%(keep_dag_run_id)s::text IS NULL OR dag_run_id IS DISTINCT FROM %(keep_dag_run_id)s::text)
"""

# --- organization settings ------------------------------------------------------------------------

UPSERT_ORGANIZATION_SETTINGS = """
INSERT INTO kpi_organization_settings (organization_id, currency, updated_at)
VALUES (%(organization_id)s, %(currency)s, %(now)s)
ON CONFLICT (organization_id) DO UPDATE SET currency = EXCLUDED.currency, updated_at = EXCLUDED.updated_at
"""

UPSERT_ORGANIZATION_QUIET_HOURS = """
INSERT INTO kpi_organization_settings (organization_id, quiet_from_minute, quiet_until_minute, quiet_days,
                                       quiet_timezone, updated_at)
VALUES (%(organization_id)s, %(quiet_from_minute)s, %(quiet_until_minute)s, %(quiet_days)s::smallint[],
        %(quiet_timezone)s, %(now)s)
ON CONFLICT (organization_id) DO UPDATE
SET quiet_from_minute = EXCLUDED.quiet_from_minute, quiet_until_minute = EXCLUDED.quiet_until_minute,
    quiet_days = EXCLUDED.quiet_days, quiet_timezone = EXCLUDED.quiet_timezone, updated_at = EXCLUDED.updated_at
"""

ORGANIZATION_QUIET_HOURS = """
SELECT quiet_from_minute, quiet_until_minute, quiet_days, quiet_timezone
FROM kpi_organization_settings WHERE organization_id = %(organization_id)s
"""

# --- snooze ---------------------------------------------------------------------------------------

SET_SNOOZE = "UPDATE kpi_alerts SET snoozed_until = %(until)s, updated_at = %(now)s WHERE id = %(alert_id)s"

# An organization's recipient domain allow-list (NULL: no restriction; migration 0011).
SET_RECIPIENT_DOMAINS = """
INSERT INTO kpi_organization_settings (organization_id, recipient_domains, updated_at)
VALUES (%(organization_id)s, %(domains)s, %(now)s)
ON CONFLICT (organization_id) DO UPDATE
SET recipient_domains = EXCLUDED.recipient_domains, updated_at = EXCLUDED.updated_at
"""

RECIPIENT_DOMAINS = (
    "SELECT recipient_domains FROM kpi_organization_settings WHERE organization_id = %(organization_id)s"
)
