"""A ClickHouse HTTP interface served from chDB, for development and tests only.

The LMS, its Celery workers and management commands are separate processes that must see one and the same
ClickHouse database, and reliability tests must be able to stop and restart "the server". chDB is ClickHouse
running inside a Python process, so this module puts one chDB engine behind ClickHouse's HTTP protocol::

    PYTHONPATH=devstack python -m clickhouse_endpoint serve --port 8123 --data-dir .devstack/clickhouse
                                        [--host 127.0.0.1] [--user default] --password secret

It prints ``listening on http://HOST:PORT`` once it accepts requests and stops cleanly on SIGTERM or SIGINT; the
data stays in ``--data-dir`` across restarts. ``--port 0`` picks a free port. The password can also come from the
``DEVSTACK_CLICKHOUSE_PASSWORD`` environment variable, which keeps it out of the process list; without one the server
does not start, unless told ``--insecure-no-password`` (chDB reads and writes any file the user can). Tests and
demos drive the server through :class:`ClickHouseEndpoint`. Production never uses this: there the plugin points at a
real ClickHouse server or cluster.

``devstack/`` is on the Python path of everything that uses this package, as edx-platform's own folder is for its
``lms`` and ``common`` packages, so the package is imported as ``clickhouse_endpoint`` and by no other name.

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
  cancellation, external data (multipart requests), roles, quotas and TLS are absent.

Refused by default, since the server runs on a developer's machine with its user's rights (see ``policy``):

* Starting without a password, unless told ``--insecure-no-password``.
* Writing over GET: as ClickHouse does, a GET request may only read (and ``SET``/``USE``); anything else gets
  READONLY. Every statement of a request is checked, since chDB, unlike ClickHouse's HTTP interface, runs several.
* SQL naming a function, table engine or dictionary source that reaches local files, programs or other hosts
  (``file``, ``url``, ``s3``, ``remote``, ``mysql``, ``postgresql``, ``executable``, ...) gets ACCESS_DENIED, as a
  ClickHouse user without the grant on that source would; ``INTO OUTFILE`` and ``FROM INFILE`` get the errors a
  ClickHouse server gives them. Words inside string literals, comments and insert data do not count. ``input()``
  remains, and the insert path still reads the request's data from a temporary file of its own.

The modules, one concern each: ``errors`` (ClickHouse's error shape), ``auth`` (credentials), ``http_compression``
(request and response bodies), ``sql`` (lexing just enough to route a request), ``policy`` (what is refused),
``engine`` (the chDB connection), ``queries`` (what a request asks the engine to do), ``server`` (the HTTP handler),
``harness`` (the server as a child process) and ``__main__`` (the command line).
"""

from .harness import ClickHouseEndpoint, free_port

__all__ = ["ClickHouseEndpoint", "free_port"]
