"""The command line: ``python -m clickhouse_endpoint serve ...``, with ``devstack/`` on the Python path.

This is what :class:`clickhouse_endpoint.ClickHouseEndpoint` runs as a child process, and what a developer runs to
point ``./manage.py lms`` commands at a ClickHouse of their own.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from .auth import INSECURE_NO_PASSWORD_FLAG, PASSWORD_ENVIRONMENT_VARIABLE, Credentials
from .engine import SERVER_TIMEZONE, Engine
from .grants import GrantTable
from .server import ClickHouseHTTPServer


def serve(host: str, port: int, data_dir: str, credentials: Credentials, grants: GrantTable | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting, let the running query finish and close the engine."""
    os.environ["TZ"] = SERVER_TIMEZONE  # read by the engine when it starts
    time.tzset()
    os.makedirs(data_dir, exist_ok=True)
    engine = Engine(data_dir)
    server = ClickHouseHTTPServer((host, port), engine, credentials, grants)
    stop_requested = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop_requested.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="clickhouse-http").start()
    print(f"listening on http://{host}:{server.server_port}", flush=True)
    stop_requested.wait()
    server.shutdown()
    server.server_close()
    engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clickhouse_endpoint",
        description="A ClickHouse HTTP interface served from chDB, for development and tests only.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="serve a chDB database over ClickHouse's HTTP interface")
    serve_command.add_argument("--port", type=int, required=True, help="port to listen on, 0 for any free one")
    serve_command.add_argument("--data-dir", required=True, help="where the database lives between runs")
    serve_command.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve_command.add_argument("--user", default="default", help="the one user accepted (default: %(default)s)")
    serve_command.add_argument(
        "--password",
        default=os.environ.get(PASSWORD_ENVIRONMENT_VARIABLE, ""),
        help=f"that user's password (default: ${PASSWORD_ENVIRONMENT_VARIABLE}); required",
    )
    serve_command.add_argument(
        INSECURE_NO_PASSWORD_FLAG,
        action="store_true",
        help="accept an empty password: anyone who can reach the port can then run SQL on this machine",
    )
    serve_command.add_argument(
        "--grants", help="a JSON file of further users and their grants per database (see clickhouse_endpoint.grants)"
    )
    serve_command.add_argument("--audit-log", help="append every grant check of those users to this file (JSON lines)")
    arguments = parser.parse_args(argv)
    if not arguments.password and not arguments.insecure_no_password:
        serve_command.error(
            f"a password is required: pass --password or set ${PASSWORD_ENVIRONMENT_VARIABLE} "
            f"({INSECURE_NO_PASSWORD_FLAG} serves without one)"
        )
    grants = GrantTable.load(arguments.grants, arguments.audit_log) if arguments.grants else None
    serve(arguments.host, arguments.port, arguments.data_dir, Credentials(arguments.user, arguments.password), grants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
