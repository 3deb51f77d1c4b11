"""``CubeHook``: the Airflow connection ``cube_default`` turned into a :class:`CubeClient`.

The connection type is ``cube``, registered by this package as an Airflow provider (see
:mod:`kpi_alerts.get_provider_info`: form fields in the UI, "Test connection")::

    AIRFLOW_CONN_CUBE_DEFAULT='{"conn_type": "cube", "host": "cube.internal", "port": 4000,
        "schema": "https", "password": "<CUBEJS_API_SECRET>",
        "extra": {"security_context": {"region": "eu"}, "continue_wait_deadline": 120}}'

Connections of type ``http`` made before the package was a provider keep working: the hook reads
the same fields whatever the type (only Airflow's "Test connection" then runs ``HttpHook``'s test).

``password`` is the HS256 API secret (a token is minted per request with the alert's
``organization_id``); alternatively ``extra.token`` is a pre-made token, used verbatim. Other extras:
``security_context`` (claims merged into minted tokens), ``continue_wait_deadline``,
``request_timeout``, ``max_rows``, ``page_size``, ``retries``, ``base_path``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from kpi_alerts.cube.client import CubeClient, CubeError
from kpi_alerts.errors import AlertValidationError
from kpi_alerts.settings import CUBE_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from kpi_alerts.kpi_data import KpiData

_NUMERIC_EXTRAS = {
    "continue_wait_deadline": float,
    "request_timeout": float,
    "max_rows": int,
    "page_size": int,
    "retries": int,
}


class CubeHook(BaseHook):
    """Run Cube.js queries for one organization at a time.

    :param cube_conn_id: the Airflow connection (type ``cube``, or ``http``) of the Cube REST API.
    :param logger_name: see :class:`~airflow.sdk.BaseHook`.
    :param client_options: :class:`CubeClient` keyword arguments that override the connection's
        extras (e.g. ``retries=0`` or ``backoff=0.01`` in tests).
    """

    conn_name_attr = "cube_conn_id"
    default_conn_name = CUBE_CONN_ID
    conn_type = "cube"
    hook_name = "Cube.js"

    def __init__(
        self, cube_conn_id: str = default_conn_name, *, logger_name: str | None = None, **client_options: Any
    ) -> None:
        super().__init__(logger_name=logger_name)
        self.cube_conn_id = cube_conn_id
        self.client_options = client_options
        self._client: CubeClient | None = None

    def get_conn(self) -> CubeClient:
        """The client for this connection, built on first use."""
        if self._client is None:
            self._client = self._build_client(self.get_connection(self.cube_conn_id))
        return self._client

    def _build_client(self, conn: Connection) -> CubeClient:
        extra: Mapping[str, Any] = conn.extra_dejson
        host = conn.host or ""
        if not host:
            raise AlertValidationError(f"connection {self.cube_conn_id!r} has no host")
        base_url = host if "://" in host else f"{conn.schema or 'http'}://{host}"
        if conn.port:
            base_url = f"{base_url}:{conn.port}"
        options: dict[str, Any] = {
            name: cast(extra[name])
            for name, cast in _NUMERIC_EXTRAS.items()
            if extra.get(name) not in (None, "")
        }
        if extra.get("base_path"):
            options["base_path"] = str(extra["base_path"])
        context = extra.get("security_context") or {}
        if not isinstance(context, Mapping):
            raise AlertValidationError(
                f"connection {self.cube_conn_id!r}: extra.security_context must be an object"
            )
        options.update(self.client_options)
        return CubeClient(
            base_url,
            api_secret=conn.password or None,
            token=extra.get("token") or None,
            extra_security_context=context,
            **options,
        )

    def load(
        self, query: Mapping[str, Any], *, security_context: Mapping[str, Any], timezone: str
    ) -> KpiData:
        """Run ``query`` for one organization in ``timezone`` (see :meth:`CubeClient.load`)."""
        return self.get_conn().load(query, security_context=security_context, timezone=timezone)

    def load_many(
        self, queries: Sequence[Mapping[str, Any]], *, security_context: Mapping[str, Any], timezone: str
    ) -> list[KpiData]:
        """Several queries of one organization in one request (see :meth:`CubeClient.load_many`)."""
        return self.get_conn().load_many(queries, security_context=security_context, timezone=timezone)

    def meta(self, security_context: Mapping[str, Any]) -> dict[str, Any]:
        """Cubes and members visible to the organization (``/v1/meta``)."""
        return self.get_conn().meta(security_context)

    def test_connection(self) -> tuple[bool, str]:
        """Check that Cube is ready and accepts our credentials (a ``/v1/meta`` call)."""
        try:
            client = self.get_conn()
            if not client.ready():
                return False, f"Cube at {client.shown_url} is not ready (/readyz)"
            cubes = client.meta(client.probe_context()).get("cubes", [])  # proves the credentials
        except (CubeError, AlertValidationError, ValueError) as exc:
            return False, str(exc)
        return True, f"Cube at {client.shown_url} is ready; {len(cubes)} cubes visible"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> CubeHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
