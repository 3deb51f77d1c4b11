"""A small StatsD receiver (UDP) that appends every metric line it gets to a file.

The native topology points Airflow's StatsD client at it (``[metrics] statsd_on``), so the tests and an
operator can see the metrics that a real StatsD server / Prometheus exporter would get: Airflow's own
(``airflow.scheduler_heartbeat``...) and the package's (``airflow.kpi_alerts.sent``...).

    python -m devstack.statsd --port 8125 --file metrics.log
"""

from __future__ import annotations

import argparse
import socket
from collections import Counter
from pathlib import Path


def serve(port: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, path.open("a", buffering=1) as out:
        sock.bind(("127.0.0.1", port))
        while True:
            data, _ = sock.recvfrom(65535)
            for line in data.decode(errors="replace").splitlines():
                if line.strip():
                    out.write(line.strip() + "\n")


def counters(path: Path) -> Counter[str]:
    """Sum of every counter (``name:value|c``) received so far, by metric name."""
    totals: Counter[str] = Counter()
    if not path.exists():
        return totals
    for line in path.read_text(errors="replace").splitlines():
        name, _, rest = line.partition(":")
        value, _, kind = rest.partition("|")
        if kind.split("|")[0] == "c":
            try:
                totals[name] += int(float(value))
            except ValueError:
                continue
    return totals


def names(path: Path) -> set[str]:
    """Every metric name received so far (counters, gauges, timers)."""
    if not path.exists():
        return set()
    return {line.partition(":")[0] for line in path.read_text(errors="replace").splitlines()}


def main() -> None:
    parser = argparse.ArgumentParser(description="A StatsD (UDP) receiver that logs metric lines to a file.")
    parser.add_argument("--port", type=int, default=8125)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--owner", help="identity, for telling this checkout's receiver from others")
    args = parser.parse_args()
    serve(args.port, args.file)


if __name__ == "__main__":
    main()
