"""The local stack for the demo and the tests: real PostgreSQL, Cube.js and SMTP servers on 127.0.0.1.

Nothing here is part of the product; it stands in for the production services of
``docker-compose.yaml`` on a machine without Docker.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("KPI_DEVSTACK_DIR", REPO_ROOT / ".devstack"))


def free_port() -> int:
    """A port nobody listens on (bound then released; good enough on a test machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
