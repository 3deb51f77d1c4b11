"""``python -m devstack {up,down,env}``: the local stack for the demo and the tests."""

from __future__ import annotations

import argparse
import shlex
import sys

from devstack import STATE_DIR, ForeignServerError
from devstack.postgres import ForeignDatabaseError
from devstack.stack import airflow_env, down, up


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    parser.add_argument("command", choices=["up", "down", "env", "topology"])
    parser.add_argument("action", nargs="?", choices=["up", "down", "status"], help="for `topology`")
    args = parser.parse_args()
    if args.command == "topology":  # the docker-compose topology, natively (devstack/topology.py)
        from devstack.topology import main as topology

        topology(args.action or "status")
        return
    if args.command == "down":
        down()
        print("stack stopped")
        return
    try:
        stack = up()
    except (ForeignServerError, ForeignDatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.command == "up":
        print(
            f"PostgreSQL  {stack.alerts_db_url}\nCube.js     {stack.cube_url}\n"
            f"SMTP        127.0.0.1:{stack.smtp_port} (messages in {stack.mail_dir})"
        )
        print('Run `eval "$(.venv/bin/python -m devstack env)"` to point Airflow at it.')
    else:
        for key, value in airflow_env(stack, STATE_DIR / "airflow").items():
            print(f"export {key}={shlex.quote(value)}")


if __name__ == "__main__":
    main()
