"""A plain-Python client for Cube.js's REST API (``/cubejs-api/v1``): no Airflow imports.

It mints a short-lived HS256 token per request whose security context carries the alert's
``organization_id`` (Cube filters every query on it), polls "Continue wait" answers up to a deadline,
retries connection errors and 5xx answers with jittered exponential backoff, pages through large
results and returns :class:`~kpi_alerts.kpi_data.KpiData`. The secret and the tokens never appear
in logs or exception messages.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
import requests
import tenacity
import urllib3

from kpi_alerts.cube.rest_format import kpi_data_from_result, refresh_time, total_order
from kpi_alerts.errors import AlertValidationError, KpiAlertError, PermanentAlertError, TransientAlertError
from kpi_alerts.kpi_data import Column, KpiData
from kpi_alerts.redaction import redact_url
from kpi_alerts.scheduling.timezones import zone

log = logging.getLogger(__name__)

TOKEN_TTL_SECONDS = 300
# Cube answers 400 for database failures too; these messages mean "down", not "bad query".
_DATABASE_DOWN_MARKERS = (
    "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "Connection terminated",
    "timeout exceeded when trying to connect", "the database system is", "too many clients",
    "terminating connection", "could not connect",
)  # fmt: skip


# Cube answers 500 for some mistakes in the query itself: retrying cannot help.
_PERMANENT_MARKERS = ("Unknown timezone", "query limit has been exceeded", "Invalid query format")


class CubeError(KpiAlertError):
    """Base of Cube failures. :attr:`status` is the HTTP status when Cube answered."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id


class CubeQueryError(CubeError, PermanentAlertError):
    """Cube rejected the query (unknown member, bad format, too many rows...): fix the alert."""


class CubeAuthError(CubeError, PermanentAlertError):
    """Cube refused the token (403): wrong secret, expired token or no organization_id."""


class CubeUnavailableError(CubeError, TransientAlertError):
    """Cube or its database could not be reached, after retries."""


class CubeTimeoutError(CubeError, TransientAlertError):
    """Cube kept answering "Continue wait" until the client's deadline passed."""


class _ContinueWait(Exception):
    """Internal: Cube is still computing the query."""


class CubeClient:
    """Talks to one Cube deployment.

    :param base_url: e.g. ``http://127.0.0.1:4010`` (without ``/cubejs-api``).
    :param api_secret: HS256 secret: a token is minted per request from the security context.
    :param token: a pre-made token used verbatim instead (then ``api_secret`` is not needed).
    :param extra_security_context: claims added to every minted token (``organization_id`` always
        comes from the call).
    :param continue_wait_deadline: seconds one :meth:`load` may spend polling "Continue wait".
    :param request_timeout: seconds per HTTP request: connecting, each socket read, and the whole
        answer's body (one that trickles in for longer is abandoned: :class:`CubeTimeoutError`).
    :param max_rows: cap on a result; a larger one raises :class:`CubeQueryError` rather than being
        silently truncated (an alert on partial data would be wrong).
    :param page_size: rows per request when the query sets no ``limit``.
    :param retries: extra attempts after a connection error or a 5xx answer.
    :param backoff: first retry delay in seconds (doubles each time, plus up to ``backoff`` jitter).
    :param backoff_max: longest retry delay.
    :param renew_query: send ``renewQuery: true`` unless the query says otherwise: alerts want fresh
        data, not Cube's ~10 s cache.
    :param base_path: the API prefix, ``/cubejs-api`` by default.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_secret: str | None = None,
        token: str | None = None,
        extra_security_context: Mapping[str, Any] | None = None,
        continue_wait_deadline: float = 60,
        request_timeout: float = 30,
        max_rows: int = 50_000,
        page_size: int = 10_000,
        retries: int = 3,
        backoff: float = 0.5,
        backoff_max: float = 8,
        renew_query: bool = True,
        base_path: str = "/cubejs-api",
    ) -> None:
        if not api_secret and not token:
            raise ValueError("CubeClient needs an api_secret or a token")
        self.base_url = base_url.rstrip("/")
        self.shown_url = redact_url(self.base_url)  # what errors and logs name: never user:pass@
        self.api_url = self.base_url + "/" + base_path.strip("/")
        self._api_secret = api_secret
        self._token = token
        self.extra_security_context = dict(extra_security_context or {})
        self.continue_wait_deadline = continue_wait_deadline
        self.request_timeout = request_timeout
        self.max_rows = max_rows
        self.page_size = min(page_size, max_rows + 1)
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.renew_query = renew_query
        self._measure_meta: dict[Any, dict[str, Mapping[str, Any]]] = {}
        self.session = requests.Session()

    def __repr__(self) -> str:  # no secret, no token
        return f"CubeClient({self.shown_url!r})"

    def __enter__(self) -> CubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    # -- public API -----------------------------------------------------------------------------

    def load(
        self, query: Mapping[str, Any], *, security_context: Mapping[str, Any], timezone: str
    ) -> KpiData:
        """Run ``query`` for one organization in ``timezone`` and return typed rows.

        :param query: a Cube query (``measures``, ``dimensions``, ``timeDimensions``, ``filters``...).
        :param security_context: must contain the integer ``organization_id``.
        :param timezone: IANA name: buckets and relative date ranges are computed in it.
        :raises CubeQueryError, CubeAuthError: permanent; :raises CubeTimeoutError,
            CubeUnavailableError: transient.
        """
        zone(timezone)  # both checked before anything is sent
        self._auth_header(security_context)
        sent, paging = self._as_sent(query, timezone)
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        offset = int(sent.get("offset") or 0)
        rows: list[Mapping[str, Any]] = []
        answers: list[Mapping[str, Any]] = []
        page = 1
        while True:
            body = dict(sent)
            if paging:
                body.update(
                    limit=min(self.page_size, self.max_rows + 1 - len(rows)), offset=offset + len(rows)
                )
            answer = self._load_page({"query": body}, security_context, f"{request_id}-span-{page}", started)
            data = answer.get("data") or []
            rows.extend(data)
            answers.append(answer)
            if len(rows) > self.max_rows:
                raise CubeQueryError(
                    f"the result exceeds {self.max_rows} rows: add a limit, filters or a coarser granularity",
                    request_id=request_id,
                )
            if not paging or len(data) < body["limit"]:
                break
            page += 1
        data = kpi_data_from_result(sent, answer.get("annotation") or {}, rows, refresh_time(*answers))
        return self._with_aggregation_types(data, security_context)

    def load_many(
        self, queries: Sequence[Mapping[str, Any]], *, security_context: Mapping[str, Any], timezone: str
    ) -> list[KpiData]:
        """Several queries of one organization in one HTTP request (Cube's ``queryType: multi``).

        The same rows as :meth:`load` of each query, in order: Cube still runs every query, but the
        request, the token check and the rewrite are paid once (a report asks for its period and the
        previous one together). Cube takes several queries at once only when their first time dimensions
        have one granularity (its data-blending rule); other sets are asked one by one. A query whose
        answer fills a page is asked again alone, page by page. One bad query fails the request:
        callers that need to know which one ask them one by one.
        """
        if (
            len(queries) == 1
            or len({first_granularity(q) for q in queries} - {None}) != 1
            or any(first_granularity(q) is None for q in queries)
        ):
            return [self.load(q, security_context=security_context, timezone=timezone) for q in queries]
        zone(timezone)
        self._auth_header(security_context)
        sent = [self._as_sent(query, timezone) for query in queries]
        first_page = min(self.page_size, self.max_rows + 1)
        bodies = [
            {**body, "limit": first_page, "offset": int(body.get("offset") or 0)} if paging else body
            for body, paging in sent
        ]
        request_id = str(uuid.uuid4())
        answer = self._load_page(
            {"query": bodies, "queryType": "multi"},
            security_context,
            f"{request_id}-span-1",
            time.monotonic(),
        )
        results = answer.get("results")
        if not isinstance(results, list) or len(results) != len(queries):
            raise CubeQueryError(
                f"Cube answered a multi-query without its {len(queries)} results", request_id=request_id
            )
        out = []
        for query, (body, paging), result in zip(queries, sent, results, strict=True):
            rows = result.get("data") or []
            if paging and len(rows) >= first_page:  # more pages: the single-query path pages it
                out.append(self.load(query, security_context=security_context, timezone=timezone))
                continue
            data = kpi_data_from_result(body, result.get("annotation") or {}, rows, refresh_time(result))
            out.append(self._with_aggregation_types(data, security_context))
        return out

    def _as_sent(self, query: Mapping[str, Any], timezone: str) -> tuple[dict[str, Any], bool]:
        """The query as sent (the alert's timezone, renewQuery, a total order when paging) and whether
        it is paged (no limit of its own)."""
        sent = copy.deepcopy(dict(query))
        sent["timezone"] = timezone
        sent.setdefault("renewQuery", self.renew_query)
        sent.pop("responseFormat", None)  # rows are parsed from the default format
        if sent.get("limit") is None:
            sent.pop("limit", None)
        paging = "limit" not in sent
        if paging and (sent.get("dimensions") or sent.get("timeDimensions")):
            sent["order"] = total_order(sent)
        return sent, paging

    def _with_aggregation_types(self, data: KpiData, security_context: Mapping[str, Any]) -> KpiData:
        """Complete measure columns from ``/v1/meta``: aggregation, short title, format and units.

        ``/load`` labels every measure ``number``; whether rows of a measure may be added up (the
        KPI rule for several rows per period, a report's headline) depends on the aggregation, which
        only ``/meta`` says; the member's ``meta`` carries its currency and percent scale. Fetched once
        per organization per client.
        """
        if not any(c.kind == "measure" for c in data.columns):
            return data
        org = security_context.get("organization_id")
        if org not in self._measure_meta:
            try:
                cubes = self.meta(security_context).get("cubes") or []
            except CubeError as exc:  # the rows are fine; only multi-row sums will refuse "number"
                log.warning("Cube /v1/meta unavailable, measure aggregations unknown: %s", exc)
                return data
            self._measure_meta[org] = {
                m["name"]: m for c in cubes for m in c.get("measures") or [] if m.get("name")
            }
        found = self._measure_meta[org]
        columns = tuple(
            _with_meta(c, found[c.key]) if c.kind == "measure" and c.key in found else c for c in data.columns
        )
        return dataclasses.replace(data, columns=columns)

    def meta(self, security_context: Mapping[str, Any]) -> dict[str, Any]:
        """The cubes, measures and dimensions visible to this organization (``GET /v1/meta``)."""
        self._auth_header(security_context)
        return self._send("GET", "/v1/meta", security_context, f"{uuid.uuid4()}-span-1")

    def probe_context(self) -> dict[str, Any]:
        """A security context for a connection check: the pre-made token's own, else organization 0
        (which reads the model through ``/v1/meta``, never rows)."""
        org = token_organization(self._token) if self._token else None
        if not isinstance(org, int):
            org = self.extra_security_context.get("organization_id", 0)
        return {"organization_id": org}

    def ready(self) -> bool:
        """Whether Cube answers ``/readyz`` with 200 (it checks its database too). Never raises."""
        try:
            return self.session.get(f"{self.base_url}/readyz", timeout=min(self.request_timeout, 5)).ok
        except requests.RequestException:
            return False

    # -- internals ------------------------------------------------------------------------------

    def _auth_header(self, security_context: Mapping[str, Any]) -> str:
        """The Authorization value, minted per HTTP request so long polls never outlive their token."""
        org = security_context.get("organization_id")
        if not isinstance(org, int) or isinstance(org, bool):
            raise AlertValidationError(f"security_context needs an integer organization_id, got {org!r}")
        if self._token is not None:
            _check_token_tenant(self._token, org)
            return self._token
        now = int(time.time())
        claims = {**self.extra_security_context, **security_context, "organization_id": org}
        claims.update(iat=now, exp=now + TOKEN_TTL_SECONDS)
        assert self._api_secret is not None  # __init__ guarantees a secret or a token
        return jwt.encode(claims, self._api_secret, algorithm="HS256")

    def _load_page(
        self, payload: Mapping[str, Any], security_context: Mapping[str, Any], request_id: str, started: float
    ) -> dict[str, Any]:
        """POST one page; re-send the identical request while Cube answers "Continue wait"."""
        polls = 0
        while True:
            try:
                return self._send("POST", "/v1/load", security_context, request_id, json=payload)
            except _ContinueWait:
                polls += 1
                waited = time.monotonic() - started
                if waited >= self.continue_wait_deadline:
                    raise CubeTimeoutError(
                        f"Cube was still computing the query after {waited:.1f} s ({polls} 'Continue wait' "
                        f"answers; deadline {self.continue_wait_deadline:g} s, request {request_id})",
                        request_id=request_id,
                    ) from None
                log.debug("Cube request %s: Continue wait after %.1f s", request_id, waited)

    def _send(
        self, method: str, path: str, security_context: Mapping[str, Any], request_id: str, **kwargs: Any
    ) -> dict[str, Any]:
        """One logical request, retried on connection errors and 5xx (and database-down 400s)."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(CubeUnavailableError),
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential_jitter(
                initial=self.backoff, max=self.backoff_max, jitter=self.backoff
            ),
            before_sleep=_log_retry,
            reraise=True,
        )
        started = time.monotonic()
        try:
            return retrying(self._send_once, method, path, security_context, request_id, **kwargs)
        except CubeUnavailableError as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise CubeUnavailableError(
                f"{exc} (gave up after {attempts} attempts in {time.monotonic() - started:.1f} s)",
                status=exc.status,
                request_id=request_id,
            ) from None

    def _send_once(
        self, method: str, path: str, security_context: Mapping[str, Any], request_id: str, **kwargs: Any
    ) -> dict[str, Any]:
        url = self.api_url + path
        deadline = time.monotonic() + self.request_timeout
        try:
            response = self.session.request(
                method,
                url,
                headers={"Authorization": self._auth_header(security_context), "x-request-id": request_id},
                timeout=self.request_timeout,
                stream=True,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise CubeUnavailableError(
                f"Cube at {self.shown_url} is unreachable: {_describe(exc)}", request_id=request_id
            ) from None
        with response:
            body = self._read_body(response, deadline, request_id)
        return _parse_response(response.status_code, response.reason, body, request_id)

    def _read_body(self, response: requests.Response, deadline: float, request_id: str) -> bytes:
        """The answer's body, whole, before ``deadline``: ``request_timeout`` bounds each socket read,
        and an answer trickling in (a byte every few seconds: a sick proxy or server) would otherwise
        never end. ``read1`` returns as soon as any bytes arrive, so the deadline is checked between them."""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = response.raw.read1(65536, decode_content=True)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise CubeUnavailableError(
                    f"Cube at {self.shown_url} broke off its answer: {type(exc).__name__}",
                    request_id=request_id,
                ) from None
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            if time.monotonic() > deadline:
                received = sum(len(c) for c in chunks)
                raise CubeTimeoutError(
                    f"Cube's answer did not finish within {self.request_timeout:g} s ({received} bytes "
                    f"received; request {request_id})",
                    request_id=request_id,
                )


def first_granularity(query: Mapping[str, Any]) -> str | None:
    """The granularity of the query's first time dimension (Cube blends queries of one granularity)."""
    tds = query.get("timeDimensions") or ()
    first = tds[0] if tds else None
    return str(first["granularity"]) if isinstance(first, Mapping) and first.get("granularity") else None


def _with_meta(column: Column, member: Mapping[str, Any]) -> Column:
    """A measure column completed by its ``/v1/meta`` member (the annotation's values win when set)."""
    extra = member.get("meta")
    extra = extra if isinstance(extra, Mapping) else {}
    currency, scale = extra.get("currency"), extra.get("percent_scale")
    return dataclasses.replace(
        column,
        type=str(member.get("aggType") or column.type),
        short_title=column.short_title or member.get("shortTitle"),
        format=column.format or member.get("format"),
        currency=str(currency).upper() if isinstance(currency, str) else column.currency,
        percent_scale=scale if scale in ("fraction", "percent") else column.percent_scale,
    )


def _parse_response(status: int, reason: str | None, content: bytes, request_id: str) -> dict[str, Any]:
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    message = body.get("error") if isinstance(body, dict) else None  # only "error", never "stack"
    if not isinstance(message, str) or not message:
        message = f"HTTP {status} {reason or ''}".strip()
    if status == 200 and isinstance(body, dict):
        if message == "Continue wait":
            raise _ContinueWait
        if "error" not in body:
            return body
    where = f"(HTTP {status}, request {request_id})"
    if status == 200 and not isinstance(body, dict):  # a proxy or something else answered
        raise CubeUnavailableError(
            f"Cube answered without a JSON result {where}", status=status, request_id=request_id
        )
    if status == 403:
        raise CubeAuthError(
            f"Cube refused the token: {message} {where}", status=status, request_id=request_id
        )
    permanent = (isinstance(body, dict) and body.get("type") == "UserError") or any(
        marker in message for marker in _PERMANENT_MARKERS
    )
    if not permanent and (
        status >= 500 or status == 429 or any(marker in message for marker in _DATABASE_DOWN_MARKERS)
    ):
        raise CubeUnavailableError(f"Cube failed: {message} {where}", status=status, request_id=request_id)
    raise CubeQueryError(f"Cube rejected the query: {message} {where}", status=status, request_id=request_id)


def _describe(exc: requests.RequestException) -> str:
    """A short reason such as ``[Errno 111] Connection refused`` (the text names the URL, never headers)."""
    if isinstance(exc, requests.Timeout):
        return f"{type(exc).__name__} (no answer in time)"
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = redact_url(str(reason or exc))
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return errno.group(0) if errno else f"{type(exc).__name__}: {text}"


def token_organization(token: str) -> object:
    """The ``organization_id`` claim of a pre-made token (unverified: only Cube holds the secret)."""
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("organization_id")
    except jwt.InvalidTokenError:
        return None


def _check_token_tenant(token: str, organization_id: int) -> None:
    """A pre-made token must be for the alert's organization: never read another tenant's data."""
    claimed = token_organization(token)
    if claimed != organization_id:
        raise CubeAuthError(
            f"the configured Cube token is for organization {claimed!r}, not {organization_id}"
        )


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0
    log.warning("Cube request failed (attempt %d): %s; retrying in %.2f s", state.attempt_number, exc, delay)
