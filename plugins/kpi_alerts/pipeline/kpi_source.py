"""Where a run's KPI values come from: the source's answers kept, so that each distinct query is asked once.

:class:`CachingKpiSource` wraps the run's :class:`~kpi_alerts.pipeline.inputs.KpiSource` (``CubeHook`` in
a DAG run) for one alert's run and for a batch of alerts alike.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from kpi_alerts.kpi_data import KpiData
from kpi_alerts.pipeline.inputs import KpiSource


class WaitClock:
    """Wall seconds the batch's threads spent waiting on Cube and SMTP (summed over threads)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()

    @contextmanager
    def timing(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.seconds += time.perf_counter() - started


class CachingKpiSource:
    """A :class:`KpiSource` that fetches each distinct (security context, timezone, query) once: one alert's
    run (its period pair, its previous period, a gate's or an anomaly's queries) and a batch's alerts
    (several people subscribed to one graph) share it.

    Thread-safe: alerts asking for a query being fetched wait for that one request. A failed fetch is
    not kept (the next alert asking tries again; those waiting on it get the same error).
    """

    def __init__(self, source: KpiSource, waits: WaitClock | None = None) -> None:
        self.source = source
        self.waits = waits or WaitClock()
        self._lock = threading.Lock()
        self._entries: dict[str, Future[KpiData]] = {}
        self.requests = 0
        self.shared = 0

    def for_run(self) -> RunQueries:
        """One alert run's view of these answers (:class:`RunQueries`)."""
        return RunQueries(self)

    def load_many(
        self, queries: Sequence[Mapping[str, Any]], *, security_context: Mapping[str, Any], timezone: str
    ) -> list[KpiData]:
        """``queries``' rows, those not fetched yet in one request (the source's ``load_many``);
        later :meth:`load` calls get them from the batch too. A failed request is not kept and is raised
        (each query asked alone again then says which one is wrong)."""
        return self._load_many(queries, security_context, timezone, seen=None)

    def _load_many(
        self,
        queries: Sequence[Mapping[str, Any]],
        security_context: Mapping[str, Any],
        timezone: str,
        *,
        seen: set[str] | None,
    ) -> list[KpiData]:
        owned: list[tuple[str, Mapping[str, Any], Future[KpiData]]] = []
        with self._lock:
            for query in queries:
                key = self._key(query, security_context, timezone)
                if key in self._entries:
                    self.shared += 1 if seen is None or key not in seen else 0
                elif all(key != k for k, _, _ in owned):
                    owned.append((key, query, Future()))
            if len(owned) < 2:
                owned = []
            for key, _, entry in owned:
                self._entries[key] = entry
            self.requests += 1 if owned else 0
        if owned:
            try:
                with self.waits.timing():
                    results = self.source.load_many(
                        [q for _, q, _ in owned], security_context=security_context, timezone=timezone
                    )
            except BaseException as exc:
                with self._lock:
                    for key, _, _ in owned:
                        del self._entries[key]
                for _, _, entry in owned:
                    entry.set_exception(exc)
                raise
            for (_, _, entry), data in zip(owned, results, strict=True):
                entry.set_result(data)
        if seen is not None:
            seen.update(self._key(q, security_context, timezone) for q in queries)
        return [self._load(q, security_context, timezone, counted=False) for q in queries]

    def remember(
        self, query: Mapping[str, Any], data: KpiData, *, security_context: Mapping[str, Any], timezone: str
    ) -> None:
        """Keep ``data`` as ``query``'s answer for the rest of the batch, unless it was fetched already:
        a report that got its rows from a wider query (``reports.query_plan.PeriodPair``) leaves them for a
        threshold alert on the same graph."""
        key = self._key(query, security_context, timezone)
        with self._lock:
            if key not in self._entries:
                entry: Future[KpiData] = Future()
                entry.set_result(data)
                self._entries[key] = entry

    @staticmethod
    def _key(query: Mapping[str, Any], security_context: Mapping[str, Any], timezone: str) -> str:
        return json.dumps([dict(security_context), timezone, query], sort_keys=True, default=str)

    def load(
        self, query: Mapping[str, Any], *, security_context: Mapping[str, Any], timezone: str
    ) -> KpiData:
        return self._load(query, security_context, timezone)

    def _load(
        self,
        query: Mapping[str, Any],
        security_context: Mapping[str, Any],
        timezone: str,
        *,
        counted: bool = True,
    ) -> KpiData:
        key = self._key(query, security_context, timezone)
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = self._entries[key] = Future()
                self.requests += 1
            elif counted:
                self.shared += 1
        if owner:
            try:
                with self.waits.timing():
                    data = self.source.load(query, security_context=security_context, timezone=timezone)
                entry.set_result(data)
            except BaseException as exc:
                with self._lock:
                    del self._entries[key]
                entry.set_exception(exc)
        return entry.result()


class RunQueries(KpiSource):
    """One alert run's view of a :class:`CachingKpiSource`: the same answers, and the same cache (a run
    keeps nothing of its own); only the count of shared answers is per run — an answer this run already
    looked at is not counted again (``shared``: answers one alert found that another one asked for)."""

    def __init__(self, cache: CachingKpiSource) -> None:
        self.cache = cache
        self.seen: set[str] = set()

    def load(
        self, query: Mapping[str, Any], *, security_context: Mapping[str, Any], timezone: str
    ) -> KpiData:
        key = self.cache._key(query, security_context, timezone)
        counted = key not in self.seen
        self.seen.add(key)
        return self.cache._load(query, security_context, timezone, counted=counted)

    def load_many(
        self, queries: Sequence[Mapping[str, Any]], *, security_context: Mapping[str, Any], timezone: str
    ) -> list[KpiData]:
        return self.cache._load_many(queries, security_context, timezone, seen=self.seen)

    def remember(
        self, query: Mapping[str, Any], data: KpiData, *, security_context: Mapping[str, Any], timezone: str
    ) -> None:
        self.seen.add(self.cache._key(query, security_context, timezone))
        self.cache.remember(query, data, security_context=security_context, timezone=timezone)
