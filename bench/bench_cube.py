"""Overhead of ``CubeHook.load`` over a bare HTTP call to the same Cube server.

Run from the repository root: ``.venv/bin/python -m bench.bench_cube [N]``. Starts (or reuses) the
devstack PostgreSQL and Cube, then times N loads through the hook and N bare ``requests.post`` calls
(plus N keep-alive ``Session.post`` calls, the like-for-like baseline: the hook keeps its connection)
with a pre-minted token and the exact body the hook sends, interleaved so all see the same server
state. The hook's extra work: minting a JWT, building the query, parsing rows into Decimals/datetimes.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
import requests

from devstack.cube import ensure_cube
from devstack.postgres import ensure_postgres

QUERY = {
    "measures": ["orders.count", "orders.total_amount"],
    "timeDimensions": [
        {"dimension": "orders.created_at", "granularity": "day", "dateRange": ["2026-11-01", "2026-11-30"]}
    ],
}
TIMEZONE = "America/Los_Angeles"
CONTEXT = {"organization_id": 1}


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def main(n: int = 200) -> None:
    cube = ensure_cube(ensure_postgres())
    os.environ["AIRFLOW_CONN_CUBE_DEFAULT"] = json.dumps(
        {
            "conn_type": "cube",
            "host": "127.0.0.1",
            "port": cube.port,
            "schema": "http",
            "password": cube.api_secret,
        }
    )
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="kpi-bench-airflow-"))
    plugins = str(Path(__file__).resolve().parents[1] / "plugins")
    if plugins not in sys.path:
        sys.path.insert(0, plugins)
    from kpi_alerts.hooks.cube import CubeHook  # after AIRFLOW_HOME is set

    hook = CubeHook()
    token = jwt.encode({**CONTEXT, "exp": int(time.time()) + 3600}, cube.api_secret, algorithm="HS256")
    body = {
        "query": {**QUERY, "timezone": TIMEZONE, "renewQuery": True, "order": [["orders.created_at", "asc"]]}
    }
    url = f"{cube.url}/cubejs-api/v1/load"

    def via_hook() -> int:
        return len(hook.load(QUERY, security_context=CONTEXT, timezone=TIMEZONE).rows)

    def bare(post: Any = requests.post) -> int:
        response = post(url, json=body, headers={"Authorization": token}, timeout=30)
        response.raise_for_status()
        return len(response.json()["data"])

    session = requests.Session()  # the hook keeps its connection alive too: the like-for-like baseline

    def bare_keepalive() -> int:
        return bare(session.post)

    cases = {"CubeHook.load": via_hook, "bare requests.post": bare, "bare Session.post": bare_keepalive}
    assert {fn() for fn in cases.values()} == {30}  # same answer; the model is compiled before timing
    for _ in range(10):
        for fn in cases.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(n):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1000)
    medians = {name: statistics.median(ms) for name, ms in samples.items()}
    print(
        f"command: .venv/bin/python -m bench.bench_cube {n}   (Cube at {cube.url}, N={n} each, interleaved)"
    )
    for name, ms in samples.items():
        print(f"{name:<19} median {medians[name]:6.2f} ms   p95 {p95(ms):6.2f} ms")
    via = medians["CubeHook.load"]
    print(f"ratio hook / bare requests.post (median): {via / medians['bare requests.post']:.2f}")
    print(f"ratio hook / bare Session.post  (median): {via / medians['bare Session.post']:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
