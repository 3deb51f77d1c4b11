"""Run every benchmark in ``bench/`` one after another: ``python -m bench [NAME ...]``.

From the repository root: ``PYTHONPATH=plugins:. .venv/bin/python -m bench`` (or ``make bench``).
Each ``bench/bench_*.py`` runs in its own process with its default arguments and prints its figures
and the command that reproduces them; ``python -m bench due parse`` runs only those. The exit code
is non-zero when a benchmark crashed (not when a figure misses its target: read the output).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FIRST = ("bench_due", "bench_claims", "bench_parse")  # then the others, alphabetically


def discover() -> list[str]:
    found = sorted(p.stem for p in HERE.glob("bench_*.py"))
    return [name for name in FIRST if name in found] + [name for name in found if name not in FIRST]


def main(selected: list[str]) -> int:
    names = discover()
    if selected:
        wanted = {s if s.startswith("bench_") else f"bench_{s}" for s in selected}
        unknown = wanted - set(names)
        if unknown:
            print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; have: {', '.join(names)}")
            return 2
        names = [n for n in names if n in wanted]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
    summary = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        code = subprocess.run(
            [sys.executable, "-m", f"bench.{name}"], cwd=ROOT, env=env, check=False
        ).returncode
        summary.append((name, code, time.monotonic() - started))
    print("\n=== summary ===")
    for name, code, seconds in summary:
        print(f"{name:<16} {'ok' if code == 0 else f'FAILED (exit {code})':<18} {seconds:6.0f} s")
    return 0 if all(code == 0 for _, code, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
