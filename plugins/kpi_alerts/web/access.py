"""Who may call the management surface: Airflow's own auth manager decides, per request.

A plugin's FastAPI app gets none of the core API's protection by itself, so every route depends on one
of these. The caller is identified as the core API does it (:func:`airflow.api_fastapi.core_api.security.get_user`:
``Authorization: Bearer <token from POST /auth/token>``, else the UI's ``_token`` cookie): 401 without a
valid token. Authorization is the permission on the ``kpi_alerts`` DAG: reading needs DAG read access,
changing (create, update, delete, pause, resume, test-send) DAG edit access; 403 without it.

Changes made with the cookie must come from this server's own pages (:func:`same_origin_for_cookies`):
the cookie is ``SameSite=Lax``, which a browser still sends on a POST from another origin of the same
site (another port, a sibling subdomain) — a bodiless ``pause`` from an auto-submitted form or a
``no-cors`` fetch would otherwise be taken as the user's. A bearer token is never sent by a browser on
its own, so requests carrying one are not checked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.configuration import conf
from fastapi import Depends, HTTPException, Request
from fastapi.params import Depends as DependsParam

DAG_ID = "kpi_alerts"
COOKIE = "_token"  # the Airflow UI's session cookie (airflow.api_fastapi.auth.managers.base_auth_manager)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_origin_for_cookies(request: Request) -> None:
    """403 for a change authenticated by the UI's cookie unless the browser says it comes from this
    server's own origin (``Sec-Fetch-Site: same-origin``, and an ``Origin`` naming this host) and is a
    JSON request (which another origin cannot send without a CORS preflight, which is refused)."""
    if (
        request.method in _SAFE_METHODS
        or request.headers.get("authorization")
        or COOKIE not in request.cookies
    ):
        return  # a bearer token, or no credentials at all (the auth dependency answers 401)
    site, origin = request.headers.get("sec-fetch-site"), request.headers.get("origin")
    if site is None and origin is None:
        _refuse("the request says nothing of where it comes from (no Origin, no Sec-Fetch-Site)")
    if site is not None and site != "same-origin":
        _refuse(f"the request comes from another origin (Sec-Fetch-Site: {site})")
    if origin is not None and urlsplit(origin).netloc.lower() not in _own_hosts(request):
        _refuse("the request comes from another origin (Origin does not name this server)")
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        _refuse("a change must be a JSON request (Content-Type: application/json)")


def _own_hosts(request: Request) -> set[str]:
    """This server as browsers address it: the Host header, and ``[api] base_url`` behind a proxy."""
    hosts = {request.headers.get("host", "").lower()}
    base_url = conf.get("api", "base_url", fallback="") or ""
    if base_url:
        hosts.add(urlsplit(base_url).netloc.lower())
    return hosts - {""}


def _refuse(why: str) -> None:
    raise HTTPException(
        status_code=403,
        detail=f"refused a change made with the Airflow UI's cookie: {why}; "
        "API clients send Authorization: Bearer <token>",
    )


def read_access() -> list[DependsParam]:
    """Dependencies of a route that only reads alerts."""
    return [Depends(requires_access_dag("GET", param_dag_id=DAG_ID))]


def edit_access() -> list[DependsParam]:
    """Dependencies of a route that changes alerts or sends mail."""
    return [Depends(same_origin_for_cookies), Depends(requires_access_dag("PUT", param_dag_id=DAG_ID))]


def actor_of(user: Any) -> str:
    """Who changed an alert, as ``kpi_alert_events`` records it (the CLI writes ``cli:user@host``)."""
    return f"api:{user.get_name()}"
