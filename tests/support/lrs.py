"""
Learning Record Stores for the xAPI tests: one that only records what it is sent, and a stand-in for Aspects'
Ralph, which also inserts every statement into ClickHouse's raw xAPI table, as Ralph's ClickHouse backend does.
"""

from __future__ import annotations

import datetime
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TUTOR_USER = "tutor-contrib-aspects"


def tutor_creates_the_ralph_route(platform, state_dir: Path, ralph_url: str) -> None:
    """
    What tutor-contrib-aspects' LMS init job runs: a user, then ERB's RouterConfiguration from JSON. ``platform``
    runs the LMS's management commands (``manage(service, *args)``): a devstack, or the site before a switch.
    """
    platform.manage(
        "lms",
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        f"User.objects.get_or_create(username={TUTOR_USER!r}, defaults={{'email': 'aspects@axim'}})",
    )
    config = {
        "model": "event_routing_backends.RouterConfiguration",
        "data": [
            {
                "enabled": True,
                "backend_name": "xAPI",
                "route_url": ralph_url,
                "auth_scheme": "Basic",
                "username": "ralph",
                "password": "ralph-password",
            }
        ],
    }
    path = state_dir / "erb_config.json"
    path.write_text(json.dumps(config))
    platform.manage("lms", "populate_model", "-f", str(path), "-u", TUTOR_USER)


class RecordingLRS(ThreadingHTTPServer):
    """An LRS's statements resource over HTTP: keeps the statements it is sent and the credentials used."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _StatementsHandler)
        self.statements: list[dict] = []
        self.authorizations: set[str] = set()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/xAPI/"

    def store(self, statements: list[dict]) -> None:
        self.statements += statements

    def __enter__(self) -> RecordingLRS:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()
        self.server_close()


class RalphLike(RecordingLRS):
    """
    Aspects' Ralph: stores each statement it receives in ``xapi.xapi_events_all`` (``event_id``, ``emission_time``
    from the statement's timestamp, ``event``), as Tutor's Ralph does with its ClickHouse backend.
    """

    def __init__(self, clickhouse_client):
        super().__init__()
        self.clickhouse = clickhouse_client

    def store(self, statements: list[dict]) -> None:
        super().store(statements)
        rows = [
            (
                uuid.UUID(statement["id"]),
                datetime.datetime.fromisoformat(statement["timestamp"]).astimezone(datetime.UTC),
                json.dumps(statement),
            )
            for statement in statements
        ]
        self.clickhouse.insert(
            "xapi_events_all", rows, column_names=("event_id", "emission_time", "event"), database="xapi"
        )


class _StatementsHandler(BaseHTTPRequestHandler):
    """POST: a list of statements (200, their ids); PUT ?statementId=: one statement (204)."""

    server: RecordingLRS

    def _receive(self) -> list[dict]:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        statements = body if isinstance(body, list) else [body]
        with self.server.lock:
            self.server.store(statements)
            self.server.authorizations.add(self.headers.get("Authorization", ""))
        return statements

    def do_POST(self):
        answer = json.dumps([statement["id"] for statement in self._receive()]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_PUT(self):
        self._receive()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass
