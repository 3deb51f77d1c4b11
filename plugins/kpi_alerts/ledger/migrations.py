"""Schema migrations: the plain-SQL files in ``include/sql/migrations``, applied and recorded by yoyo.

yoyo keeps the applied ids in ``_yoyo_migration`` and holds a lock while applying, so running
``python -m kpi_alerts migrate`` twice, or from two machines at once, is safe.
"""

from __future__ import annotations

from yoyo import get_backend, read_migrations

from kpi_alerts.paths import MIGRATIONS_DIR


def _yoyo_url(db_url: str) -> str:
    # psycopg 3 is the driver Airflow's Postgres provider uses; yoyo names it postgresql+psycopg.
    scheme, _, rest = db_url.partition("://")
    if scheme in {"postgres", "postgresql", "postgresql+psycopg"}:
        return f"postgresql+psycopg://{rest}"
    raise ValueError(f"Not a PostgreSQL URL: scheme {scheme!r}")


def migrate(db_url: str) -> list[str]:
    """Apply the migrations not yet applied; return their ids (empty when up to date)."""
    backend = get_backend(_yoyo_url(db_url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def pending_migrations(db_url: str) -> list[str]:
    backend = get_backend(_yoyo_url(db_url))
    return [m.id for m in backend.to_apply(read_migrations(str(MIGRATIONS_DIR)))]
