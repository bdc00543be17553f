"""
A site that also keeps an LRS: with the route made by ``aspects_sink_xapi_lrs``, every statement reaches
ClickHouse through aspects-sink and the LRS through event-routing-backends' own dispatch, on MariaDB as
production runs it (ERB finds its ``xAPI`` route under the name ``xapi`` only with MySQL's
case-insensitive matching).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from devstack_settings import drop_database
from processes import Devstack

from tests.support.xapi import DEVSTACK_SETTINGS, learners_do_a_course, wait_for_statements

pytestmark = pytest.mark.slow

USERNAME, PASSWORD = "lrs-user", "lrs-password"


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

    def __enter__(self) -> RecordingLRS:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()
        self.server_close()


class _StatementsHandler(BaseHTTPRequestHandler):
    """POST: a list of statements (200, their ids); PUT ?statementId=: one statement (204)."""

    server: RecordingLRS

    def _receive(self) -> list[dict]:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        statements = body if isinstance(body, list) else [body]
        with self.server.lock:
            self.server.statements += statements
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


def test_statements_reach_clickhouse_and_the_lrs_alike(tmp_path, mariadb):
    database = f"aspects_e2e_lrs_{uuid.uuid4().hex[:8]}"
    devstack = Devstack(tmp_path, settings=DEVSTACK_SETTINGS, database="mysql", mysql_database=database)
    try:
        with devstack, RecordingLRS() as lrs:
            devstack.manage(
                "lms", "aspects_sink_xapi_lrs", "--route_url", lrs.url, "--username", USERNAME, "--password", PASSWORD
            )
            devstack.start_worker()
            activity = learners_do_a_course(devstack, "LrsX", learners=3, rounds=2)
            emitted = activity["emitted"]

            in_clickhouse = wait_for_statements(devstack, devstack.clickhouse_client(), activity["course"], emitted)
            devstack.wait_for(lambda: len(lrs.statements) >= emitted, timeout=60, what="the statements at the LRS")

            assert sorted(statement["id"] for statement in lrs.statements) == sorted(activity["erb_ids"])
            assert sorted(row[1] for row in in_clickhouse) == sorted(activity["erb_ids"])
            assert lrs.authorizations == {"Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()}
    finally:
        drop_database(database)
