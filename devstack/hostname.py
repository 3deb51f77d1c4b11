"""Airflow's ``[core] hostname_callable`` for the native topology: one machine, several "hosts".

Every component of ``python -m devstack topology`` runs on this machine, so ``socket.getfqdn()`` would
give both Celery workers (and both schedulers) the same name, and nobody could tell from a task
instance's ``hostname`` which worker ran it. Each component is started with ``KPI_TOPOLOGY_HOSTNAME``
(``worker-1``, ``scheduler-2``...), which this returns; elsewhere it falls back to Airflow's default.
"""

from __future__ import annotations

import os
import socket

ENV_VAR = "KPI_TOPOLOGY_HOSTNAME"


def get_hostname() -> str:
    return os.environ.get(ENV_VAR) or socket.getfqdn()
