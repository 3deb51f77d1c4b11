"""DAG parse cost: the first import of ``dags/kpi_alerts_dag.py`` vs a trivial TaskFlow DAG, in fresh processes.

Run from the repository root::

    PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_parse [N]

Each sample is a fresh Python process that first runs ``import airflow.sdk`` (what a DAG processor
has done before it parses a file), then imports the DAG file once, timing only that import. N
(default 15) processes per file, interleaved, so both see the same machine load; medians compared.
The modules the parse itself loads are listed: none of pandas, openpyxl, reportlab, weasyprint, matplotlib may
appear (psycopg and requests are reported too).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KPI_DAG = ROOT / "dags" / "kpi_alerts_dag.py"
FORBIDDEN = ("pandas", "openpyxl", "reportlab", "weasyprint", "matplotlib")
WATCHED = (*FORBIDDEN, "psycopg", "requests")
TRIVIAL_DAG = '''\
"""A trivial TaskFlow DAG: the baseline."""

import pendulum
from airflow.sdk import dag, task


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def trivial():
    @task
    def hello() -> str:
        return "hello"

    hello()


trivial()
'''


def child(path: str) -> None:
    """In a fresh process: import Airflow, then time the first import of the DAG file at ``path``."""
    import importlib.util

    import airflow.sdk  # noqa: F401  (the DAG processor has Airflow loaded before it parses a file)

    before = set(sys.modules)
    spec = importlib.util.spec_from_file_location(f"bench_dag_{Path(path).stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    started = time.perf_counter()
    spec.loader.exec_module(module)
    elapsed = time.perf_counter() - started
    loaded = sorted(set(sys.modules) - before)
    print(
        json.dumps(
            {
                "ms": elapsed * 1000,
                "modules_loaded": len(loaded),
                "watched_loaded_by_parse": sorted({m.split(".")[0] for m in loaded} & set(WATCHED)),
                "watched_loaded_before": sorted({m.split(".")[0] for m in before} & set(WATCHED)),
            }
        )
    )


def sample(path: Path, env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_parse", "--child", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(n: int = 15) -> None:
    with tempfile.TemporaryDirectory(prefix="kpi-bench-parse-") as tmp:
        trivial = Path(tmp) / "dags" / "trivial_taskflow.py"
        trivial.parent.mkdir()
        trivial.write_text(TRIVIAL_DAG)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            "AIRFLOW_HOME": str(Path(tmp) / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),  # as Airflow's sys.path
        }
        sample(KPI_DAG, env)  # warm the OS file cache and write bytecode before measuring
        sample(trivial, env)
        kpi: list[dict[str, object]] = []
        base: list[dict[str, object]] = []
        for _ in range(n):
            kpi.append(sample(KPI_DAG, env))
            base.append(sample(trivial, env))

    def median_ms(samples: list[dict[str, object]]) -> float:
        return statistics.median(float(s["ms"]) for s in samples)  # type: ignore[arg-type]

    kpi_ms, base_ms = median_ms(kpi), median_ms(base)
    heavy = sorted({m for s in kpi for m in s["watched_loaded_by_parse"]})  # type: ignore[attr-defined]
    already = sorted({m for s in kpi for m in s["watched_loaded_before"]})  # type: ignore[attr-defined]
    print(f"command: cd {ROOT} && PYTHONPATH=plugins:. .venv/bin/python -m bench.bench_parse {n}")
    print(f"first import after `import airflow.sdk`, fresh process each, N={n} per file, interleaved")
    print(f"{'DAG file':<34}{'median ms':>10}{'min ms':>9}{'max ms':>9}{'modules':>9}")
    for name, samples in (("dags/kpi_alerts_dag.py", kpi), ("trivial TaskFlow DAG (baseline)", base)):
        times = [float(s["ms"]) for s in samples]  # type: ignore[arg-type]
        modules = statistics.median(int(s["modules_loaded"]) for s in samples)  # type: ignore[call-overload]
        print(f"{name:<34}{statistics.median(times):10.1f}{min(times):9.1f}{max(times):9.1f}{modules:9.0f}")
    extra = kpi_ms - base_ms
    print(
        f"kpi_alerts over the baseline: {extra:+.1f} ms (target <= 50 ms) -> {'OK' if extra <= 50 else 'OVER'}"
    )
    print(f"watched modules loaded by the parse: {', '.join(heavy) or 'none'}  ({', '.join(WATCHED)})")
    print(f"  (already loaded by `import airflow.sdk` itself: {', '.join(already) or 'none'})")
    bad = [m for m in heavy if m in FORBIDDEN]
    print(f"heavy libraries at parse time: {', '.join(bad) or 'none'} -> {'OK' if not bad else 'FAIL'}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
