"""The "KPI alerts" page of the Airflow UI: a static page and its script, served from the package.

The Airflow UI shows it in its navigation (the plugin's ``external_views``) and frames ``/kpi-alerts/ui/``;
the script calls the REST API (:mod:`kpi_alerts.web.api`) with the UI's cookie. Every file is behind the
same read permission as the API; nothing is loaded from another host (the Content-Security-Policy says
so to the browser), and the script writes every value with ``textContent``, never as HTML.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from kpi_alerts.web.access import read_access
from kpi_alerts.web.prefixes import UI_PREFIX

STATIC_DIR = Path(__file__).with_name("static")
ASSETS = {  # the only files served: name -> media type
    "kpi_alerts.js": "text/javascript",
    "kpi_alerts.css": "text/css",
    "icon.svg": "image/svg+xml",
}
NOT_ALLOWED = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>KPI alerts</title></head><body>'
    "<h1>KPI alerts</h1><p>You are logged in, but this page needs read access to the "
    "<code>kpi_alerts</code> DAG. Ask an Airflow admin for it.</p></body></html>"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def create_page_app() -> FastAPI:
    """The page as a FastAPI app, for the plugin's ``fastapi_apps`` (mounted at :data:`UI_PREFIX`)."""
    app = FastAPI(title="KPI alerts page", openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(HTTPException)
    def _login_first(request: Request, exc: HTTPException) -> Response:
        """A browser that opens the page without a session is sent to Airflow's login, then back; one
        without the permission is told which one it needs."""
        if request.url.path.rstrip("/").endswith(UI_PREFIX):
            if exc.status_code == 401:
                from airflow.api_fastapi.app import get_auth_manager

                login = get_auth_manager().get_url_login(next_url=str(request.url))
                return RedirectResponse(login, status_code=303)
            if exc.status_code == 403:
                return HTMLResponse(NOT_ALLOWED, status_code=403, headers=SECURITY_HEADERS)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.get("/", dependencies=read_access(), include_in_schema=False)
    def index() -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=SECURITY_HEADERS)

    @app.get("/static/{name}", dependencies=read_access(), include_in_schema=False)
    def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, "no such file")
        return FileResponse(STATIC_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)

    return app


__all__ = ["UI_PREFIX", "create_page_app"]
