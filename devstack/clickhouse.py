"""A ClickHouse HTTP interface served from chDB, for development and tests only.

The LMS, its Celery workers and management commands are separate processes that must see one and the same
ClickHouse database, and reliability tests must be able to stop and restart "the server". chDB is ClickHouse
running inside a Python process, so this module puts one chDB engine behind ClickHouse's HTTP protocol::

    python devstack/clickhouse.py serve --port 8123 --data-dir .devstack/clickhouse [--host 127.0.0.1]
                                        [--user default --password secret]

It prints ``listening on http://HOST:PORT`` once it accepts requests and stops cleanly on SIGTERM or SIGINT; the
data stays in ``--data-dir`` across restarts. ``--port 0`` picks a free port. The password can also come from the
``DEVSTACK_CLICKHOUSE_PASSWORD`` environment variable, which keeps it out of the process list. Tests and demos drive
the server through :class:`ClickHouseEndpoint`. Production never uses this: there the plugin points at a real
ClickHouse server or cluster.

Supported, and checked with clickhouse-connect's default HTTP client settings:

* ``GET /ping`` and ``GET /`` answer ``Ok.``; any other path is 404.
* The query in the ``query`` URL parameter, in the POST body, or both (concatenated, as ClickHouse does); the result
  format from the statement's ``FORMAT`` clause or the ``default_format`` parameter (TabSeparated otherwise); the
  ``database`` parameter; ``param_<name>`` server-side query parameters.
* Settings passed as URL parameters are applied to that one query. Parameters that only steer ClickHouse's HTTP
  layer (``session_id``, ``query_id``, ``wait_end_of_query``, ``send_progress_in_http_headers``, ``http_*``, ...)
  are accepted and ignored.
* ``INSERT INTO t [(columns)] [SETTINGS ...] FORMAT X`` followed by data, with the statement in the body or in the
  URL: the data goes to chDB through ``INSERT ... FROM INFILE``, so any input format chDB reads works (Native,
  RowBinary, CSV, TabSeparated, JSONEachRow, Values, ...).
* HTTP compression (what clickhouse-connect uses, and by default): a request body with ``Content-Encoding`` lz4,
  zstd, gzip, deflate (or br when ``brotli`` is installed) is decompressed; a response is compressed with the first
  of those the request's ``Accept-Encoding`` lists, unless it says ``enable_http_compression=0``.
* Credentials from Basic auth, the ``X-ClickHouse-User``/``X-ClickHouse-Key`` headers or the ``user``/``password``
  parameters, none meaning user ``default`` with no password. Wrong ones get ClickHouse's AUTHENTICATION_FAILED
  (HTTP 403). Passwords are never logged: the log shows method, path and status, never the query string.
* Errors in ClickHouse's shape (status code, ``X-ClickHouse-Exception-Code``, ``Code: N. DB::Exception: ...``), and
  the response headers clients read: ``X-ClickHouse-Summary``, ``-Format``, ``-Timezone``, ``-Query-Id``,
  ``-Server-Display-Name``. The server's time zone is UTC whatever the machine's, as in Aspects deployments.

Not supported:

* ClickHouse's own block compression, the ``compress=1`` and ``decompress=1`` parameters: they are refused with
  NOT_IMPLEMENTED. clickhouse-connect 1.12 never sends them (it uses HTTP compression, above), so it needs no
  particular configuration; only a client explicitly configured with ``compress=1``/``decompress=1`` is affected.
* Sessions: ``session_id`` (which clickhouse-connect generates) is ignored and all requests share one chDB
  connection, so a ``SET`` sent as a statement, or a temporary table, is seen by every later request, while ``USE``
  lasts one request. Pass settings and ``database`` with each query instead, as clickhouse-connect does.
* Streaming: queries run one at a time and each result is buffered before it is sent. Progress headers, query
  cancellation, external data (multipart requests), roles, quotas and TLS are absent, and GET requests are not
  restricted to read-only queries.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gzip
import hmac
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import IO, Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import lz4.frame

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd  # what clickhouse-connect itself uses for zstd before Python 3.14

try:
    import brotli
except ImportError:  # optional, as it is for clickhouse-connect
    brotli = None

PASSWORD_ENVIRONMENT_VARIABLE = "DEVSTACK_CLICKHOUSE_PASSWORD"
DEFAULT_FORMAT = "TabSeparated"
SERVER_TIMEZONE = "UTC"

# URL parameters that steer ClickHouse's HTTP layer rather than the query: never applied as settings.
HTTP_ONLY_PARAMETERS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "user",
        "password",
        "quota_key",
        "role",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "close_session",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "client_protocol_version",
        "stacktrace",
        "enable_http_compression",
        "send_progress_in_http_headers",
        "cancel_http_readonly_queries_on_client_close",
    }
)
HTTP_ONLY_PARAMETER_PREFIX = "http_"
QUERY_PARAMETER_PREFIX = "param_"  # param_<name>: a value for {name:Type} in the query


# --- Errors -----------------------------------------------------------------------------------------------------


class ClickHouseError(Exception):
    """An error as ClickHouse reports it: a numeric code and a ``Code: N. DB::Exception: ... (NAME)`` text.

    Clients such as clickhouse-connect build their exceptions from exactly these two things.
    """

    # ClickHouse answers most errors with 500; these get the status its HTTP handler gives them.
    HTTP_STATUS_BY_CODE: Mapping[int, int] = {
        36: 400,  # BAD_ARGUMENTS
        62: 400,  # SYNTAX_ERROR
        60: 404,  # UNKNOWN_TABLE
        81: 404,  # UNKNOWN_DATABASE
        48: 501,  # NOT_IMPLEMENTED
        516: 403,  # AUTHENTICATION_FAILED
    }
    _CODE_IN_TEXT = re.compile(r"Code: (\d+)\.")

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code

    @classmethod
    def of(cls, code: int, name: str, message: str) -> ClickHouseError:
        """Build an error raised by this server itself, worded the way ClickHouse words its own."""
        return cls(code, f"Code: {code}. DB::Exception: {message} ({name})")

    @classmethod
    def from_engine(cls, error: Exception) -> ClickHouseError:
        """Wrap a chDB error, whose message already is ClickHouse's error text."""
        text = str(error).strip()
        match = cls._CODE_IN_TEXT.search(text)
        if match is None:
            return cls.of(1001, "STD_EXCEPTION", text)
        return cls(int(match.group(1)), text[match.start() :])

    @property
    def http_status(self) -> int:
        return self.HTTP_STATUS_BY_CODE.get(self.code, 500)


def authentication_failed(user: str) -> ClickHouseError:
    return ClickHouseError.of(
        516,
        "AUTHENTICATION_FAILED",
        f"{user}: Authentication failed: password is incorrect, or there is no user with such name.",
    )


# --- HTTP compression -------------------------------------------------------------------------------------------


class Codec(NamedTuple):
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


def _decompress_lz4_frames(data: bytes) -> bytes:
    """Decompress a body made of LZ4 frames: clickhouse-connect compresses each insert block as its own frame."""
    parts = []
    while data:
        decompressor = lz4.frame.LZ4FrameDecompressor()
        parts.append(decompressor.decompress(data))
        if not decompressor.eof:
            raise ValueError("truncated LZ4 frame")
        data = decompressor.unused_data
    return b"".join(parts)


# Keyed by Content-Encoding token. zstd's decompress, like gzip's, reads concatenated frames by itself.
HTTP_CODECS: dict[str, Codec] = {
    "lz4": Codec(lz4.frame.compress, _decompress_lz4_frames),
    "zstd": Codec(zstd.compress, zstd.decompress),
    "gzip": Codec(gzip.compress, gzip.decompress),
    "deflate": Codec(zlib.compress, zlib.decompress),
}
if brotli is not None:
    HTTP_CODECS["br"] = Codec(brotli.compress, brotli.decompress)


def decode_request_body(body: bytes, content_encoding: str) -> bytes:
    """Undo the request's HTTP compression."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    codec = HTTP_CODECS.get(encoding)
    if codec is None:
        raise ClickHouseError.of(36, "BAD_ARGUMENTS", f"Unknown HTTP compression method '{encoding}'.")
    try:
        return codec.decompress(body)
    except Exception as error:
        raise ClickHouseError.of(
            271, "CANNOT_DECOMPRESS", f"Cannot decompress {encoding} request body: {error}."
        ) from None


def response_encoding(parameters: Mapping[str, str], accept_encoding: str) -> str | None:
    """Pick the encoding for a result from those the client accepts, in its order of preference (lz4 first).

    ClickHouse compresses only with ``enable_http_compression=1``. chDB's ``system.settings`` reports that setting as
    1 already, so clients such as clickhouse-connect do not send it: compression is on unless a request turns it off.
    """
    if not is_enabled(parameters.get("enable_http_compression", "1")):
        return None
    accepted = (token.split(";")[0].strip().lower() for token in accept_encoding.split(","))
    return next((encoding for encoding in accepted if encoding in HTTP_CODECS), None)


def is_enabled(flag: str) -> bool:
    return flag.strip().lower() not in ("", "0", "false")


def reject_native_compression(parameters: Mapping[str, str]) -> None:
    """Refuse ClickHouse's own block compression loudly: ignoring it would hand the client undecodable bytes."""
    for flag in ("compress", "decompress"):
        if is_enabled(parameters.get(flag, "")):
            raise ClickHouseError.of(
                48,
                "NOT_IMPLEMENTED",
                f"{flag}=1 (ClickHouse block compression) is not supported by the development server; "
                "use HTTP compression (Content-Encoding / Accept-Encoding), as clickhouse-connect does by default.",
            )


# --- Authentication ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)

    def matches(self, other: Credentials) -> bool:
        """Compare in constant time, as any password check should."""
        same_user = hmac.compare_digest(self.user.encode(), other.user.encode())
        return hmac.compare_digest(self.password.encode(), other.password.encode()) and same_user


def request_credentials(headers: Mapping[str, str], parameters: Mapping[str, str]) -> Credentials:
    """Read the credentials from wherever ClickHouse accepts them; without any, the user is ``default``."""
    authorization = headers.get("Authorization", "")
    if authorization.startswith("Basic "):
        try:
            user, _, password = base64.b64decode(authorization[len("Basic ") :], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise authentication_failed("") from None
        return Credentials(user, password)
    if "X-ClickHouse-User" in headers or "X-ClickHouse-Key" in headers:
        return Credentials(headers.get("X-ClickHouse-User", "default"), headers.get("X-ClickHouse-Key", ""))
    return Credentials(parameters.get("user", "default"), parameters.get("password", ""))


# --- Reading statements -----------------------------------------------------------------------------------------

_SQL_TOKEN = re.compile(
    rb"""
      (?P<quoted> '(?:[^'\\]|\\.|'')*' | "(?:[^"\\]|\\.)*" | `(?:[^`\\]|\\.)*` )
    | (?P<comment> --[^\n]* | /\*.*?\*/ )
    | (?P<word> [A-Za-z_][A-Za-z0-9_]* )
    | (?P<space> \s+ )
    | (?P<other> . )
    """,
    re.VERBOSE | re.DOTALL,
)
# Statements whose response is a result set. Only those report X-ClickHouse-Format: that is how clients tell a query
# with an empty result from a command.
RESULT_STATEMENTS = frozenset({b"SELECT", b"WITH", b"SHOW", b"DESCRIBE", b"DESC", b"EXPLAIN", b"EXISTS", b"CHECK"})
# After INSERT, these words mean the data is part of the SQL itself or read by the engine, not sent by the client.
INSERT_WITHOUT_CLIENT_DATA = frozenset({b"VALUES", b"SELECT", b"WITH", b"FROM"})


class Word(NamedTuple):
    """A keyword or identifier of a statement, outside quotes and comments; depth counts enclosing parentheses."""

    text: bytes
    start: int
    end: int
    depth: int

    @property
    def keyword(self) -> bytes:
        return self.text.upper()


def sql_words(sql: bytes) -> Iterator[Word]:
    """Yield the words of a statement, lazily: an insert's data after its FORMAT clause is never scanned."""
    depth = 0
    for token in _SQL_TOKEN.finditer(sql):
        if token.lastgroup == "word":
            yield Word(token.group(), token.start(), token.end(), depth)
        elif token.lastgroup == "other":
            depth += {b"(": 1, b")": -1}.get(token.group(), 0)


def _adjacent(sql: bytes, first: Word, second: Word) -> bool:
    return not sql[first.end : second.start].strip()


def _data_start(request: bytes, position: int) -> int:
    """Where an insert's data begins after its format name: past blanks and one line break, as ClickHouse reads it."""
    while request[position : position + 1] in (b" ", b"\t"):
        position += 1
    for line_break in (b"\r\n", b"\n"):
        if request.startswith(line_break, position):
            return position + len(line_break)
    return position


@dataclass(frozen=True)
class InsertWithData:
    """An ``INSERT ... FORMAT X`` statement and the data that followed it in the request."""

    target: str
    settings_clause: str
    data_format: str
    data: bytes

    def reading_from(self, path: str) -> str:
        """The same insert, taking its data from a file: chDB has no request body to read it from."""
        return f"{self.target} FROM INFILE {quote_string(path)}{self.settings_clause} FORMAT {self.data_format}"


def parse_insert_with_data(request: bytes) -> InsertWithData | None:
    """Split ``INSERT INTO t (cols) [SETTINGS ...] FORMAT X <data>``; None for any other statement."""
    words = (word for word in sql_words(request) if word.depth == 0)
    first = next(words, None)
    if first is None or first.keyword != b"INSERT":
        return None
    settings_start = None
    for word in words:
        if word.keyword in INSERT_WITHOUT_CLIENT_DATA:
            return None
        if word.keyword == b"SETTINGS" and settings_start is None:
            settings_start = word.start
        elif word.keyword == b"FORMAT":
            format_name = next(words, None)
            if format_name is None or not _adjacent(request, word, format_name):
                return None
            head_end = word.start if settings_start is None else settings_start
            return InsertWithData(
                target=request[:head_end].decode().rstrip(),
                settings_clause=" " + request[head_end : word.start].decode().strip() if settings_start else "",
                data_format=format_name.text.decode(),
                data=request[_data_start(request, format_name.end) :],
            )
    return None


def output_format(sql: bytes, default_format: str) -> str:
    """The format of a statement's result: its own ``FORMAT`` clause, else the request's default."""
    words = [word for word in sql_words(sql) if word.depth == 0]
    chosen = default_format
    for word, following in itertools.pairwise(words):
        if word.keyword == b"FORMAT" and _adjacent(sql, word, following):
            chosen = following.text.decode()
    return chosen


def returns_result_set(sql: bytes) -> bool:
    first = next(sql_words(sql), None)
    return first is not None and first.keyword in RESULT_STATEMENTS


def quote_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def quote_identifier(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace("`", "\\`")
    return f"`{escaped}`"


# --- The engine -------------------------------------------------------------------------------------------------

_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class QueryOptions:
    """What a request asks for besides its SQL: the current database, per-query settings, query parameters."""

    database: str = "default"
    settings: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url_parameters: Mapping[str, str]) -> QueryOptions:
        settings = {
            name: value
            for name, value in url_parameters.items()
            if name not in HTTP_ONLY_PARAMETERS
            and not name.startswith((HTTP_ONLY_PARAMETER_PREFIX, QUERY_PARAMETER_PREFIX))
        }
        parameters = {
            name.removeprefix(QUERY_PARAMETER_PREFIX): value
            for name, value in url_parameters.items()
            if name.startswith(QUERY_PARAMETER_PREFIX)
        }
        return cls(url_parameters.get("database") or "default", settings, parameters)


@dataclass(frozen=True)
class EngineResult:
    data: bytes
    summary: Mapping[str, str]


class Engine:
    """The process's one chDB connection.

    A chDB connection runs one query at a time, so a lock serializes them; the connection's current database and
    settings are set for each query and the settings put back afterwards, so requests do not leak into each other.
    """

    def __init__(self, data_dir: str) -> None:
        import chdb  # only the serving process needs the engine, which is heavy to load

        self._connection = chdb.connect(data_dir)
        self._lock = threading.Lock()
        self.timezone = self.execute("SELECT timezone()", DEFAULT_FORMAT, QueryOptions()).data.decode().strip()

    def execute(self, sql: str, result_format: str, options: QueryOptions) -> EngineResult:
        with self._lock:
            try:
                self._run(f"USE {quote_identifier(options.database)}")
                with self._settings_applied(options.settings):
                    result = self._connection.query(sql, result_format, params=dict(options.parameters))
            except RuntimeError as error:  # chdb.ChdbError
                raise ClickHouseError.from_engine(error) from None
        return EngineResult(result.bytes(), _summary(result))

    def close(self) -> None:
        """Close once the running query, if any, is done, so that its data is fully written."""
        with self._lock:
            self._connection.close()

    @contextmanager
    def _settings_applied(self, settings: Mapping[str, str]) -> Iterator[None]:
        applied = []
        try:
            for name, value in settings.items():
                if not _SETTING_NAME.fullmatch(name):
                    raise ClickHouseError.of(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'.")
                self._run(f"SET {name} = {quote_string(value)}")
                applied.append(name)
            yield
        finally:
            for name in applied:
                self._run(f"SET {name} = DEFAULT")

    def _run(self, sql: str) -> None:
        self._connection.query(sql, DEFAULT_FORMAT)


def _summary(result: Any) -> dict[str, str]:
    """The counters ClickHouse puts in X-ClickHouse-Summary, as strings like ClickHouse's."""
    counters = {
        "read_rows": result.rows_read(),
        "read_bytes": result.bytes_read(),
        "written_rows": result.rows_written(),
        "written_bytes": result.bytes_written(),
        "elapsed_ns": round(result.elapsed() * 1e9),
    }
    return {name: str(value) for name, value in counters.items()}


# --- Serving queries --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryReply:
    data: bytes
    summary: Mapping[str, str]
    result_format: str | None  # None for statements that do not return a result set


@contextmanager
def _data_file(data: bytes) -> Iterator[str]:
    """Hold insert data in a temporary file for ``INFILE``; its suffix keeps chDB from guessing a compression."""
    handle, path = tempfile.mkstemp(prefix="clickhouse-insert-", suffix=".data")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        yield path
    finally:
        os.unlink(path)


def request_statement(url_query: str, body: bytes) -> bytes:
    """The request's statement, which ClickHouse reads from the ``query`` parameter followed by the body."""
    if url_query and body:
        return url_query.encode() + b"\n" + body
    return url_query.encode() or body


def parse_insert(url_query: str, body: bytes) -> InsertWithData | None:
    """Find an insert with client data; a statement complete in the URL takes the whole body as its data."""
    insert = parse_insert_with_data(url_query.encode()) if url_query else None
    if insert is not None:
        return InsertWithData(insert.target, insert.settings_clause, insert.data_format, insert.data + body)
    return parse_insert_with_data(request_statement(url_query, body))


def execute_request(engine: Engine, url_parameters: Mapping[str, str], body: bytes) -> QueryReply:
    """Run what one HTTP request asks for."""
    reject_native_compression(url_parameters)
    options = QueryOptions.from_url(url_parameters)
    url_query = url_parameters.get("query", "")
    insert = parse_insert(url_query, body)
    if insert is not None:
        with _data_file(insert.data) as path:
            result = engine.execute(insert.reading_from(path), DEFAULT_FORMAT, options)
        return QueryReply(result.data, result.summary, None)
    sql = request_statement(url_query, body)
    if not sql.strip():
        raise ClickHouseError.of(62, "SYNTAX_ERROR", "Empty query.")
    default_format = url_parameters.get("default_format") or DEFAULT_FORMAT
    result = engine.execute(sql.decode(), default_format, options)  # chDB, too, lets a FORMAT clause win
    result_format = output_format(sql, default_format) if returns_result_set(sql) else None
    return QueryReply(result.data, result.summary, result_format)


class ClickHouseHTTPServer(ThreadingHTTPServer):
    """Accepts connections on threads, so pings and new clients are answered while a query runs."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], engine: Engine, credentials: Credentials) -> None:
        super().__init__(address, ClickHouseRequestHandler)
        self.engine = engine
        self.credentials = credentials
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
        if not credentials.matches(self.server.credentials):
            raise authentication_failed(credentials.user)
        body = decode_request_body(body, self.headers.get("Content-Encoding", ""))
        reply = execute_request(self.server.engine, parameters, body)
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


# --- Command line -----------------------------------------------------------------------------------------------


def serve(host: str, port: int, data_dir: str, credentials: Credentials) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting, let the running query finish and close the engine."""
    os.environ["TZ"] = SERVER_TIMEZONE  # read by the engine when it starts
    time.tzset()
    os.makedirs(data_dir, exist_ok=True)
    engine = Engine(data_dir)
    server = ClickHouseHTTPServer((host, port), engine, credentials)
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="serve a chDB database over ClickHouse's HTTP interface")
    serve_command.add_argument("--port", type=int, required=True, help="port to listen on, 0 for any free one")
    serve_command.add_argument("--data-dir", required=True, help="where the database lives between runs")
    serve_command.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve_command.add_argument("--user", default="default", help="the one user accepted (default: %(default)s)")
    serve_command.add_argument(
        "--password",
        default=os.environ.get(PASSWORD_ENVIRONMENT_VARIABLE, ""),
        help=f"that user's password (default: ${PASSWORD_ENVIRONMENT_VARIABLE}, else empty)",
    )
    arguments = parser.parse_args(argv)
    serve(arguments.host, arguments.port, arguments.data_dir, Credentials(arguments.user, arguments.password))
    return 0


# --- Test helper ------------------------------------------------------------------------------------------------

SCRIPT_PATH = os.path.abspath(__file__)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ClickHouseEndpoint:
    """Runs the server as a child process, for tests and demos that need a ClickHouse they can stop and restart.

    ``restart()`` keeps the port and the data, which is what a client sees when the real server restarts. The
    server's output goes to a temporary file (a pipe nobody reads could block it) and is quoted if it fails to start.
    """

    STARTUP_TIMEOUT_SECONDS = 30.0
    STOP_TIMEOUT_SECONDS = 15.0

    def __init__(
        self, data_dir: str | os.PathLike[str], port: int | None = None, user: str = "default", password: str = ""
    ) -> None:
        self.data_dir = os.fspath(data_dir)
        self.port = port or free_port()
        self.user = user
        self.password = password
        self._process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"ClickHouseEndpoint({self.url!r}, data_dir={self.data_dir!r}, user={self.user!r})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ClickHouseEndpoint:
        """Start the server and return once it answers pings; raise, quoting its output, if it cannot start."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 - open while the server runs, closed by stop()
        command = [sys.executable, SCRIPT_PATH, "serve", "--port", str(self.port), "--data-dir", self.data_dir]
        self._process = subprocess.Popen(
            [*command, "--user", self.user],
            stdout=self._output,
            stderr=subprocess.STDOUT,
            env={**os.environ, PASSWORD_ENVIRONMENT_VARIABLE: self.password},  # off the command line, which ps shows
        )
        self._wait_until_ready()
        return self

    def stop(self) -> None:
        """Stop the server with SIGTERM, killing it if it has not exited in time."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(self.STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._output is not None:
            self._output.close()
            self._output = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> ClickHouseEndpoint:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.STARTUP_TIMEOUT_SECONDS
        while not self._answers_ping():
            if not self.running:
                output = self.output()
                self.stop()
                raise RuntimeError(f"ClickHouse endpoint on port {self.port} exited during startup:\n{output}")
            if time.monotonic() > deadline:
                output = self.output()
                self.stop()
                raise TimeoutError(f"ClickHouse endpoint on port {self.port} not ready in time:\n{output}")
            time.sleep(0.05)

    def _answers_ping(self) -> bool:
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with no_proxy.open(f"{self.url}/ping", timeout=1) as response:
                return response.read() == b"Ok.\n"
        except OSError:
            return False

    def output(self) -> str:
        """What the server has printed since it started: its address, a line per request, any traceback.

        Read without moving the file offset, which the server process shares and writes at.
        """
        if self._output is None:
            return ""
        descriptor = self._output.fileno()
        return os.pread(descriptor, os.fstat(descriptor).st_size, 0).decode(errors="replace")


if __name__ == "__main__":
    sys.exit(main())
