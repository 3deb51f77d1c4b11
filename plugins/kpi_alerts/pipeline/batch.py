"""Many alerts in one task instance, and how batches are sized.

Plain Python (no Airflow imports): the operator passes factories for database connections and SMTP
sessions, and the Cube source. A batch shares:

- one load of all its alerts, and one claim statement per chunk of 32 for their fresh slots
  (:func:`~kpi_alerts.ledger.claims.claim_fresh_slots`), just before they start; any other case (misfire,
  resumption, takeover) is claimed alone (:func:`~kpi_alerts.pipeline.alert_run.claim_and_run`);
- the Cube answers (:class:`~kpi_alerts.pipeline.kpi_source.CachingKpiSource`: each distinct query of an
  organization and timezone asked once; a chunk's first queries asked several to a request);
- per thread, one database connection and one SMTP session, kept for the batch.

Each alert is claimed, run and recorded exactly once, by one thread, through the pipeline's one path
(:func:`~kpi_alerts.pipeline.alert_run.run_claim`). Claims the batch made but never started (it stopped
early) are released for retry at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from kpi_alerts.alerts.definition import AlertDefinition
from kpi_alerts.cube.client import first_granularity
from kpi_alerts.errors import KpiAlertError, RelayRefused, TransientAlertError
from kpi_alerts.ledger.alert_store import load_alerts
from kpi_alerts.ledger.claim_terms import Claim
from kpi_alerts.ledger.claims import claim_fresh_slots
from kpi_alerts.ledger.outcomes import release_for_retry
from kpi_alerts.pipeline.alert_run import AlertRun, claim_and_run, first_queries, process_alert, run_claim
from kpi_alerts.pipeline.inputs import KpiSource, Mailer, RunSettings
from kpi_alerts.pipeline.kpi_source import CachingKpiSource, WaitClock

log = logging.getLogger(__name__)

#: The share of one alert's time spent waiting on Cube and SMTP from which a batch runs several alerts
#: at once (see :func:`run_batch`). Below it the alerts are mostly CPU work: the executor's other task
#: processes keep the cores busy during the waits, and threads only add the interpreter lock's contention.
WAIT_SHARE_FOR_THREADS = 0.5
#: Cube queries asked in one request when a chunk of alerts starts (see :func:`_prefetch`).
PREFETCH_QUERIES = 16


# --- sizing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchPlan:
    """Map items for one tick: ``ranges`` are positions in the due list (0-based, end exclusive)."""

    due: int
    ranges: tuple[tuple[int, int], ...]
    estimated_seconds: float  # the tick's wall time if every batch takes its estimate and waves are full

    @property
    def batches(self) -> int:
        return len(self.ranges)

    def label(self, number: int) -> str:
        """``batch 3/40: alerts 1201-1240`` (1-based positions, ASCII hyphen in the tick's due list)."""
        start, end = self.ranges[number]
        return f"batch {number + 1}/{self.batches}: alerts {start + 1}-{end}"


def plan_batches(
    due: int,
    *,
    parallelism: int,
    target_seconds: float,
    seconds_per_alert: float,
    max_items: int,
) -> BatchPlan:
    """Cut ``due`` alerts into batches of about ``target_seconds`` each, for ``parallelism`` slots.

    - as many batches as the time estimate needs (``due * seconds_per_alert / target_seconds``), but at
      least one per parallel slot, so every slot works;
    - more batches than slots are rounded up to whole waves (a multiple of ``parallelism``), so the last
      wave is not one straggler;
    - never more than ``max_items`` (Airflow's ``max_map_length``) nor than ``due``; sizes differ by at
      most one.
    """
    if due <= 0:
        return BatchPlan(0, (), 0.0)
    parallelism = max(1, parallelism)
    wanted = max(math.ceil(due * seconds_per_alert / max(target_seconds, 1e-9)), min(parallelism, due))
    if wanted > parallelism:
        wanted = math.ceil(wanted / parallelism) * parallelism
    count = max(1, min(wanted, due, max_items))
    size, extra = divmod(due, count)
    ranges, start = [], 0
    for number in range(count):
        end = start + size + (1 if number < extra else 0)
        ranges.append((start, end))
        start = end
    largest = size + (1 if extra else 0)
    waves = math.ceil(count / parallelism)
    return BatchPlan(due, tuple(ranges), waves * largest * seconds_per_alert)


# --- sharing ------------------------------------------------------------------------------------


class _TimedMailer:
    """A mailer whose deliveries count as waiting (see :class:`WaitClock`)."""

    def __init__(self, mailer: Mailer, waits: WaitClock) -> None:
        self.mailer, self.waits = mailer, waits

    def deliver(self, *args: Any, **kwargs: Any) -> Any:
        with self.waits.timing():
            return self.mailer.deliver(*args, **kwargs)


# --- running ------------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """Every alert of the batch, in order: its :class:`AlertRun`, or the error that ended it."""

    runs: list[AlertRun] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    transient: bool = False
    cube_requests: int = 0
    threads: int = 1  # alerts in flight at once after the first chunk
    wait_share: float | None = None  # the first chunk's share of time waiting on Cube and SMTP
    cube_shared: int = 0
    smtp_sessions: int = 0
    seconds: float = 0.0


class _Resources(threading.local):
    conn: psycopg.Connection[Any] | None = None
    mailer: Mailer | None = None


def run_batch(
    alert_ids: Sequence[int],
    *,
    connect: Callable[[], psycopg.Connection[Any]],
    open_mailer: Callable[[], Mailer],
    source: KpiSource,
    settings: RunSettings,
    threads: int = 4,
    claim_chunk: int = 32,
) -> BatchResult:
    """Process a batch of alerts; every alert is attempted (a failure does not stop the others).

    :param connect: opens an autocommit database connection (one per thread, kept for the batch).
    :param open_mailer: a mailer per thread, kept for the batch (a ``SessionMailer`` in production);
        closed at the end if it has a ``close()``.
    :param threads: how many alerts may be in flight at once (1 = one after another). The first chunk
        runs one alert at a time and measures the share of its time spent waiting on Cube and SMTP;
        the rest of the batch uses the threads only when that share is at least
        :data:`WAIT_SHARE_FOR_THREADS` (remote servers). When the alerts are CPU-bound (servers on the
        same host, answering in milliseconds) threads only add the interpreter's lock contention:
        ~15 % more CPU per alert, measured.
    :param claim_chunk: fresh slots are claimed this many at a time (one statement each), just before
        those alerts start.
    """
    started = time.monotonic()
    batch = _Batch(connect, open_mailer, source, settings)
    with ExitStack() as cleanup:
        cleanup.callback(_close_all, batch.opened)
        conn, _ = batch.resources()
        batch.alerts = load_alerts(conn, alert_ids)
        pool = None
        if threads > 1 and len(alert_ids) > 1:
            pool = cleanup.enter_context(
                ThreadPoolExecutor(max_workers=min(threads, len(alert_ids)), thread_name_prefix="kpi-batch")
            )
        try:
            outcomes: list[Any] = []
            for start in range(0, len(alert_ids), claim_chunk):
                # Claimed a chunk at a time, just before its alerts start: a batch stopped hard (its run's
                # timeout, a killed worker) leaves at most one chunk of claims waiting for their lease.
                chunk = alert_ids[start : start + claim_chunk]
                outcomes.extend(batch.run_chunk(conn, chunk, pool, measure=start == 0, threads=threads))
            batch.collect(alert_ids, outcomes)
        finally:
            batch.release_unstarted(conn)
    result = batch.result
    result.cube_requests, result.cube_shared = batch.queries.requests, batch.queries.shared
    result.smtp_sessions = sum(getattr(m, "sessions", 0) for m in batch.opened[1::2])
    result.seconds = time.monotonic() - started
    return result


class _Batch:
    """One batch's shared state: its alerts and claims, the Cube answers, a connection and a mailer per
    thread, which alerts started, and whether the SMTP relay refused this deployment."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        open_mailer: Callable[[], Mailer],
        source: KpiSource,
        settings: RunSettings,
    ) -> None:
        self.connect, self.open_mailer, self.settings = connect, open_mailer, settings
        self.result = BatchResult()
        self.waits = WaitClock()
        self.queries = CachingKpiSource(source, self.waits)
        self.local = _Resources()
        self.opened: list[Any] = []  # connection, mailer, connection, mailer ... (closed at the end)
        self.lock = threading.Lock()
        self.alerts: dict[int, AlertDefinition] = {}
        self.claims: dict[int, Claim] = {}
        self.started: set[int] = set()
        self.overlap = False  # decided after the first chunk, which runs one alert at a time
        self.relay: list[RelayRefused] = []  # the relay refused this deployment: the rest of the batch waits

    def resources(self) -> tuple[psycopg.Connection[Any], Mailer]:
        """This thread's database connection and mailer, opened at its first alert."""
        if self.local.conn is None:
            conn, mailer = self.connect(), self.open_mailer()
            self.local.conn, self.local.mailer = conn, _TimedMailer(mailer, self.waits)
            with self.lock:
                self.opened.extend([conn, mailer])
        assert self.local.mailer is not None
        return self.local.conn, self.local.mailer

    def run_chunk(
        self,
        conn: psycopg.Connection[Any],
        chunk: Sequence[int],
        pool: ThreadPoolExecutor | None,
        *,
        measure: bool,
        threads: int,
    ) -> list[Any]:
        """Claim the chunk's fresh slots in one statement, ask Cube for their first queries, run its alerts."""
        if self.relay:  # the relay refuses us: claim nothing more, the next try takes them
            return [self.relay[0]] * len(chunk)
        settings = self.settings
        self.claims.update(
            claim_fresh_slots(
                conn,
                [self.alerts[i] for i in chunk if i in self.alerts and self.alerts[i].is_active],
                logical_time=settings.logical_time,
                now=settings.clock(),
                claimant=settings.claimant,
                settings=settings.claim,
            )
        )
        _prefetch(self.queries, [self.alerts[i] for i in chunk if i in self.claims], settings.clock())
        chunk_started, waited = time.perf_counter(), self.waits.seconds
        outcomes = _map(self.one, chunk, pool if self.overlap else None)
        if measure and pool is not None:
            share = (self.waits.seconds - waited) / max(time.perf_counter() - chunk_started, 1e-9)
            self.overlap = share >= WAIT_SHARE_FOR_THREADS
            self.result.threads, self.result.wait_share = (threads if self.overlap else 1), share
            log.debug("waiting share %.0f %%: %d thread(s)", 100 * share, self.result.threads)
        return outcomes

    def one(self, alert_id: int) -> AlertRun:
        """Run one alert of the batch through the pipeline's one path (claimed with its chunk, or alone)."""
        if self.relay:
            raise self.relay[0]  # not started: its claim is released for the next try (release_unstarted)
        with self.lock:
            self.started.add(alert_id)
        conn, mailer = self.resources()
        source, settings = self.queries, self.settings
        try:
            if alert_id in self.claims:  # claimed with its chunk: this call's to finish, whatever happens
                alert, claim = self.alerts[alert_id], self.claims[alert_id]
                return run_claim(conn, alert, claim, source=source, mailer=mailer, settings=settings)
            if alert_id in self.alerts:  # a misfire, a resumption, a takeover: claimed alone
                alert = self.alerts[alert_id]
                return claim_and_run(conn, alert, source=source, mailer=mailer, settings=settings)
            # not loaded with the batch (its row could not be read): read alone, recorded if unreadable
            return process_alert(conn, alert_id, source=source, mailer=mailer, settings=settings)
        except RelayRefused as exc:
            self.relay.append(exc)
            raise

    def collect(self, alert_ids: Sequence[int], outcomes: Sequence[Any]) -> None:
        """Each alert's outcome into the result: its run, or the error that ended it."""
        result = self.result
        waiting = sum(isinstance(o, RelayRefused) for o in outcomes)
        if self.relay:  # said once for the batch, not once per alert: it is the deployment's problem
            result.transient = True
            result.failures.append(f"{self.relay[0]} ({waiting} alert(s) of this batch wait for it)")
        for alert_id, outcome in zip(alert_ids, outcomes, strict=True):
            if isinstance(outcome, RelayRefused):
                continue
            if isinstance(outcome, AlertRun):
                result.runs.append(outcome)
            elif isinstance(outcome, TransientAlertError):
                result.transient = True
                result.failures.append(f"alert {alert_id}: {outcome} (will retry)")
            elif isinstance(outcome, KpiAlertError):
                result.failures.append(str(outcome))
            elif isinstance(outcome, psycopg.Error):
                raise outcome  # the database is in trouble: the next try resumes the claims (claims.py)
            else:  # one alert's bug never stops the others
                log.error("alert %s: unexpected error", alert_id, exc_info=outcome)
                result.failures.append(
                    f"alert {alert_id}: internal error: {type(outcome).__name__}: {outcome}"[:500]
                )

    def release_unstarted(self, conn: psycopg.Connection[Any]) -> None:
        """Claims made for alerts the batch never started (it stopped early): give them back at once."""
        why = str(self.relay[0]) if self.relay else "the batch stopped before this alert"
        for alert_id, claim in self.claims.items():
            if alert_id in self.started:
                continue
            try:
                release_for_retry(conn, claim, now=self.settings.clock(), error=why)
            except psycopg.Error:  # the lease frees it later
                log.exception("Could not release the claim of alert %s", alert_id)


def _prefetch(source: CachingKpiSource, alerts: Sequence[AlertDefinition], now: datetime) -> None:
    """Ask Cube for the first queries of a chunk's alerts (:func:`~kpi_alerts.pipeline.alert_run.first_queries`)
    up to :data:`PREFETCH_QUERIES` per request, one organization, timezone and granularity each (Cube's
    multi-query): Cube's cost is mostly per request, not per query. The alerts then find their rows in
    the batch. A failed request only loses the head start: each alert asks again alone, and names its
    own error; a query without a granularity (Cube blends none) is left to its alert."""
    groups: dict[tuple[int, str, str], list[Mapping[str, Any]]] = {}
    for alert in alerts:
        try:
            planned = first_queries(alert, now)
        except Exception:  # a definition its own run will find broken, and record why
            continue
        for query in planned:
            granularity = first_granularity(query)
            if granularity is not None:
                groups.setdefault((alert.organization_id, alert.timezone, granularity), []).append(query)
    for (organization_id, timezone, _), planned in groups.items():
        for start in range(0, len(planned), PREFETCH_QUERIES):
            try:
                source.load_many(
                    planned[start : start + PREFETCH_QUERIES],
                    security_context={"organization_id": organization_id},
                    timezone=timezone,
                )
            except TransientAlertError as exc:  # Cube is down or slow: no more waiting on it here
                log.debug("Cube prefetch stopped (the alerts ask alone): %s", exc)
                return
            except KpiAlertError as exc:  # one query Cube refuses fails its request
                log.debug("Cube prefetch failed (the alerts ask alone): %s", exc)


def _map(
    function: Callable[[int], AlertRun], items: Sequence[int], pool: ThreadPoolExecutor | None
) -> list[Any]:
    """``function`` over ``items`` in order; each item's exception is returned in its place."""

    def guarded(item: int) -> Any:
        try:
            return function(item)
        except Exception as exc:
            return exc

    if pool is None:
        return [guarded(item) for item in items]
    return list(pool.map(guarded, items))


def _close_all(opened: list[Any]) -> None:
    for resource in opened:
        close = getattr(resource, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # closing is best effort
                log.debug("closing %r failed", resource, exc_info=True)


def chunks(items: Sequence[Any], plan: BatchPlan) -> Iterator[tuple[str, Sequence[Any]]]:
    """``(label, items)`` per batch of ``plan``."""
    for number, (start, end) in enumerate(plan.ranges):
        yield plan.label(number), items[start:end]
