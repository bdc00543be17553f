"""ClickHouse's HTTP interface over the engine: status codes, headers, keep-alive, compression and logging.

Clients (clickhouse-connect for the plugin) see only this, so it follows what ClickHouse's own HTTP handler sends,
including the headers clients read and the shape of errors.
"""

from __future__ import annotations

import email.policy
import json
import socket
import sys
import traceback
import uuid
from collections.abc import Iterator, Mapping
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .auth import Credentials, request_credentials
from .engine import Engine
from .errors import ClickHouseError, authentication_failed
from .grants import GrantTable
from .http_compression import HTTP_CODECS, decode_request_body, response_encoding
from .queries import execute_request


class ClickHouseHTTPServer(ThreadingHTTPServer):
    """Accepts connections on threads, so pings and new clients are answered while a query runs."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], engine: Engine, credentials: Credentials, grants: GrantTable | None = None
    ) -> None:
        super().__init__(address, ClickHouseRequestHandler)
        self.engine = engine
        self.credentials = credentials  # the server's own user, with every right
        self.grants = grants  # further users, with their grants
        self.display_name = socket.gethostname()


class ClickHouseRequestHandler(BaseHTTPRequestHandler):
    """Speaks ClickHouse's HTTP protocol; keep-alive, since clickhouse-connect reuses its connections."""

    protocol_version = "HTTP/1.1"
    server: ClickHouseHTTPServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Log path and status only: the query string can carry the password."""
        self.log_message("%s %s %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        """Log to stderr, cutting any query string that http.server's own messages may quote."""
        message, separator, _ = (format % args).partition("?")
        sys.stderr.write(f"{self.log_date_time_string()} {message}{'?...' if separator else ''}\n")

    def _handle(self) -> None:
        url = urlsplit(self.path)
        try:
            body = self._read_body()
            parameters = dict(parse_qsl(url.query, keep_blank_values=True))
            if self.headers.get_content_type() == "multipart/form-data":
                parameters.update(self._form_fields(body))
                body = b""
            if url.path == "/ping" or (url.path == "/" and not parameters.get("query") and not body):
                self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            elif url.path != "/":
                self._send(404, f"There is no handle {url.path}\n".encode(), {"Content-Type": "text/plain"})
            else:
                self._answer_query(parameters, body)
        except ClickHouseError as error:
            self._send_error(error)
        except Exception as error:
            sys.stderr.write(traceback.format_exc())
            self.close_connection = True
            self._send_error(ClickHouseError.of(1001, "STD_EXCEPTION", f"{type(error).__name__}: {error}"))

    def _answer_query(self, parameters: dict[str, str], body: bytes) -> None:
        credentials = request_credentials(self.headers, parameters)
        check_grants = None
        if not credentials.matches(self.server.credentials):
            user = self.server.grants.user_for(credentials) if self.server.grants else None
            if user is None:
                raise authentication_failed(credentials.user)
            grants = self.server.grants

            def check_grants(sql: bytes, database: str) -> None:
                grants.check(user, sql, database)

        body = decode_request_body(body, self.headers.get("Content-Encoding", ""))
        reply = execute_request(
            self.server.engine, parameters, body, read_only=self.command == "GET", check_grants=check_grants
        )
        headers = {
            "Content-Type": "application/octet-stream",
            "X-ClickHouse-Query-Id": parameters.get("query_id") or str(uuid.uuid4()),
            "X-ClickHouse-Summary": json.dumps(reply.summary),
        }
        if reply.result_format:
            headers["X-ClickHouse-Format"] = reply.result_format
        data = reply.data
        encoding = response_encoding(parameters, self.headers.get("Accept-Encoding", ""))
        if encoding and data:
            data = HTTP_CODECS[encoding].compress(data)
            headers["Content-Encoding"] = encoding
        self._send(200, data, headers)

    def _form_fields(self, body: bytes) -> dict[str, str]:
        """
        The fields of a multipart form, which ClickHouse reads as URL parameters: clickhouse-connect sends the query
        and its ``param_`` values this way when they are too long for a URL (over 4 KiB).
        """
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        form = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        return {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True).decode()
            for part in form.iter_parts()
        }

    def _read_body(self) -> bytes:
        """Read the whole body, always, so the kept-alive connection stays in step for the next request."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return b"".join(self._read_chunks())
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _read_chunks(self) -> Iterator[bytes]:
        """Chunked transfer encoding, which urllib3 uses for streamed bodies such as clickhouse-connect inserts."""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            yield self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailer fields, unused
            pass

    def _send_error(self, error: ClickHouseError) -> None:
        headers = {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(error.code)}
        self._send(error.http_status, f"{error}\n".encode(), headers)

    def _send(self, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("X-ClickHouse-Server-Display-Name", self.server.display_name)
        self.send_header("X-ClickHouse-Timezone", self.server.engine.timezone)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
