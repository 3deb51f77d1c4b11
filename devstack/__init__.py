"""The local stack for the demo and the tests: real PostgreSQL, Cube.js and SMTP servers on 127.0.0.1.

Nothing here is part of the product; it stands in for the production services of
``docker-compose.yaml`` on a machine without Docker.

Several checkouts may run a stack on one machine. A server already answering on a configured port is
reused only when it proves to be this checkout's own (each server states its owner, the state
directory below: PostgreSQL by its data directory, Cube.js and the mail catcher by an identity they
were started with); anything else is refused with :class:`ForeignServerError`, never used or changed.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("KPI_DEVSTACK_DIR", REPO_ROOT / ".devstack")).resolve()
#: What this checkout's servers answer when asked who started them.
OWNER = f"kpi-alerts-devstack:{STATE_DIR}"


class ForeignServerError(RuntimeError):
    """A port of the stack is held by a server this checkout did not start: it is left alone."""

    def __init__(self, what: str, port: int, env_var: str, seen: str) -> None:
        super().__init__(
            f"{what} port {port} is in use by a server this checkout did not start ({seen}); "
            f"refusing to use or change it. Stop that server, or give this stack another port: "
            f"export {env_var}={free_port()}"
        )


def free_port() -> int:
    """A port nobody listens on (bound then released; good enough on a test machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether anything accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
