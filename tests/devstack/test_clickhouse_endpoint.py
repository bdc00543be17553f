"""The devstack ClickHouse endpoint, driven by clickhouse-connect with its default settings, on a real chDB engine."""

import datetime as dt
import gzip
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

import clickhouse_connect
import clickhouse_endpoint
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from clickhouse_endpoint import ClickHouseEndpoint

USER = "aspects"
PASSWORD = "s3cret'pa:ss"  # a quote and a colon: both must survive Basic auth


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with ClickHouseEndpoint(tmp_path_factory.mktemp("clickhouse"), user=USER, password=PASSWORD) as running:
        yield running


def connect(endpoint, **settings):
    return clickhouse_connect.get_client(
        host="127.0.0.1", port=endpoint.port, username=USER, password=PASSWORD, **settings
    )


@pytest.fixture
def client(endpoint):
    with connect(endpoint) as connected:
        yield connected


ASPECTS_COLUMNS = {
    "id": "UInt64",
    "name": "String",
    "score": "Int32",
    "actor_id": "UUID",
    "is_active": "Bool",
    "emission_time": "DateTime64(6)",
    "org": "LowCardinality(String)",
    "nickname": "Nullable(String)",
    "completed_at": "Nullable(DateTime64(6))",
    "grade": "Nullable(Int32)",
}


def aspects_row(number):
    emitted = dt.datetime(2024, 3, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=number * 37, microseconds=number)
    return [
        number,
        f"Zoë 学生 №{number} 🎓",
        -number,
        uuid.uuid5(uuid.NAMESPACE_URL, str(number)),
        number % 2 == 0,
        emitted,
        f"org-{number % 7}",
        None if number % 3 else f"Ñandú {number}",
        None if number % 4 else emitted + dt.timedelta(days=1),
        None if number % 5 else number,
    ]


def as_returned(row):
    """What the client reads back: DateTime64 columns without a time zone come back naive, in the server's UTC."""
    return tuple(value.replace(tzinfo=None) if isinstance(value, dt.datetime) else value for value in row)


def test_native_insert_and_query_round_trip_every_aspects_column_type(client):
    columns = ", ".join(f"{name} {kind}" for name, kind in ASPECTS_COLUMNS.items())
    client.command(f"CREATE TABLE round_trip ({columns}) ENGINE = MergeTree ORDER BY id")
    rows = [aspects_row(number) for number in range(10_000)]

    summary = client.insert("round_trip", rows, column_names=list(ASPECTS_COLUMNS))
    result = client.query("SELECT * FROM round_trip ORDER BY id")

    assert summary.written_rows == 10_000
    assert result.column_names == tuple(ASPECTS_COLUMNS)
    assert result.result_rows == [as_returned(row) for row in rows]


def test_raw_inserts_and_a_parameterized_query(client):
    client.command("CREATE TABLE raw_rows (id UInt32, s String) ENGINE = MergeTree ORDER BY id")
    csv = '1,plain\n2,"O\'Brien, ""Jr"""\n'
    json_each_row = "\n".join(json.dumps({"id": 3 + n, "s": text}) for n, text in enumerate(["it's", "çà"]))

    client.raw_insert("raw_rows", ["id", "s"], csv, fmt="CSV")
    # Compressed by the caller: the statement then travels in the URL and the body is pure (gzip) data.
    client.raw_insert(
        "raw_rows", ["id", "s"], gzip.compress(json_each_row.encode()), fmt="JSONEachRow", compression="gzip"
    )

    assert client.query("SELECT id, s FROM raw_rows ORDER BY id").result_rows == [
        (1, "plain"),
        (2, 'O\'Brien, "Jr"'),
        (3, "it's"),
        (4, "çà"),
    ]
    assert client.query("SELECT id FROM raw_rows WHERE s = {s:String}", parameters={"s": "it's"}).result_rows == [(3,)]


def test_parameters_too_long_for_a_url_travel_in_a_form(client):
    """Over 4 KiB of parameters, clickhouse-connect sends the query and its values as multipart form fields."""
    client.command("CREATE TABLE form_keys (id UUID, s String) ENGINE = MergeTree ORDER BY id")
    ids = [uuid.uuid4() for _ in range(1000)]
    client.insert("form_keys", [[key, "it's"] for key in ids[::100]], column_names=["id", "s"])

    found = client.query(
        "SELECT count() FROM form_keys WHERE id IN {ids:Array(UUID)} AND s = {s:String}",
        parameters={"ids": ids, "s": "it's"},
    )

    assert found.result_rows == [(10,)]


def test_settings_apply_to_one_query_only(client):
    default = client.command("SELECT getSetting('max_threads')")

    assert client.command("SELECT getSetting('max_threads')", settings={"max_threads": 3}) == 3
    assert client.command("SELECT getSetting('max_threads')") == default != 3


def test_credentials_are_checked(endpoint):
    with pytest.raises(DatabaseError, match="Authentication failed"):
        clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port, username=USER, password="wrong")
    with pytest.raises(DatabaseError, match="Authentication failed"):
        clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port)  # user default, no password

    with connect(endpoint) as right:
        assert right.command("SELECT currentDatabase()") == "default"


def test_passwords_stay_out_of_the_server_log(endpoint):
    without_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(password):
        query = urllib.parse.urlencode({"user": USER, "password": password, "query": "SELECT 1"})
        with without_proxy.open(f"{endpoint.url}/?{query}", timeout=10) as response:
            return response.read()

    with pytest.raises(urllib.error.HTTPError) as refused:
        get("wrong-but-secret")

    assert refused.value.code == 403
    assert get(PASSWORD) == b"1\n"
    log = endpoint.output()
    assert "GET / 403" in log
    assert "wrong-but-secret" not in log
    assert "pa:ss" not in log


def test_data_survives_a_restart(endpoint):
    with connect(endpoint) as before:
        before.command("CREATE TABLE survivors (id UInt32) ENGINE = MergeTree ORDER BY id")
        before.insert("survivors", [[1], [2], [3]], column_names=["id"])
    port = endpoint.port

    endpoint.restart()

    assert endpoint.port == port
    with connect(endpoint) as after:
        assert after.query("SELECT id FROM survivors ORDER BY id").result_rows == [(1,), (2,), (3,)]


def test_errors_carry_the_clickhouse_code_and_text(client):
    with pytest.raises(DatabaseError, match=r"Code: 60\. DB::Exception: .*UNKNOWN_TABLE"):
        client.query("SELECT * FROM no_such_table")
    with pytest.raises(DatabaseError, match=r"Code: 62\. DB::Exception: Syntax error.*SYNTAX_ERROR"):
        client.command("SELEC 1")


def test_database_setting_resolves_unqualified_names(endpoint, client):
    client.command("CREATE DATABASE IF NOT EXISTS event_sink")
    client.command("CREATE TABLE event_sink.course_names (course_key String) ENGINE = MergeTree ORDER BY course_key")

    with connect(endpoint, database="event_sink") as in_database:
        in_database.insert("course_names", [["course-v1:edX+DemoX+Demo_Course"]], column_names=["course_key"])
        assert in_database.command("SELECT currentDatabase()") == "event_sink"
        assert in_database.query("SELECT course_key FROM course_names").result_rows == [
            ("course-v1:edX+DemoX+Demo_Course",)
        ]
    assert client.command("SELECT count() FROM event_sink.course_names") == 1


def http_get(endpoint, query):
    """A GET request as a browser, curl or a crawler sends it: the query and the credentials in the URL."""
    without_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"{endpoint.url}/?{urllib.parse.urlencode({'user': USER, 'password': PASSWORD, 'query': query})}"
    with without_proxy.open(url, timeout=10) as response:
        return response.read()


def test_get_requests_read(client, endpoint):
    client.command("CREATE TABLE readable (id UInt32) ENGINE = MergeTree ORDER BY id")
    client.insert("readable", [[1], [2]], column_names=["id"])

    assert http_get(endpoint, "SELECT sum(id) FROM readable") == b"3\n"
    assert http_get(endpoint, "(SELECT 1) -- INSERT, in a comment") == b"1\n"
    assert http_get(endpoint, "SHOW TABLES LIKE 'readable'") == b"readable\n"


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE written_over_get (id UInt32) ENGINE = MergeTree ORDER BY id",
        "INSERT INTO written_over_get FORMAT CSV\n1",
        "INSERT INTO written_over_get VALUES (1)",
        "DROP TABLE IF EXISTS written_over_get",
        "SELECT 1; CREATE TABLE written_over_get (id UInt32) ENGINE = Memory",  # chDB would run both
    ],
)
def test_get_requests_do_not_write(client, endpoint, statement):
    client.command("CREATE TABLE IF NOT EXISTS written_over_get (id UInt32) ENGINE = MergeTree ORDER BY id")
    client.command("TRUNCATE TABLE written_over_get")
    if statement.startswith("SELECT"):
        client.command("DROP TABLE written_over_get")

    with pytest.raises(urllib.error.HTTPError) as refused:
        http_get(endpoint, statement)

    assert refused.value.code == 500  # what ClickHouse answers READONLY with
    assert refused.value.headers["X-ClickHouse-Exception-Code"] == "164"
    assert "method GET implies readonly" in refused.value.read().decode()
    exists = client.command("EXISTS TABLE written_over_get")
    assert exists == (0 if statement.startswith("SELECT") else 1)
    if exists:
        assert client.command("SELECT count() FROM written_over_get") == 0


@pytest.mark.parametrize(
    ("statement", "code"),
    [
        ("SELECT * FROM file('/etc/hostname', 'LineAsString')", 497),
        ("SELECT * FROM `file` ('/etc/hostname', 'LineAsString')", 497),
        ("SELECT file('/etc/hostname')", 497),
        ("SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')", 497),
        ("SELECT * FROM s3('http://127.0.0.1:9/bucket/key.csv')", 497),
        ("SELECT * FROM remote('127.0.0.1:9', system.one)", 497),
        ("INSERT INTO FUNCTION file('{out}', 'CSV', 'a UInt8') VALUES (1)", 497),
        ("CREATE TABLE on_disk (a UInt8) ENGINE = File(CSV, '{out}')", 497),
        ("SELECT 1 INTO OUTFILE '{out}'", 358),
        ("INSERT INTO io_target FROM INFILE '/etc/hostname' FORMAT LineAsString", 78),
    ],
)
def test_sql_reaching_files_programs_or_hosts_is_refused(client, tmp_path, statement, code):
    client.command("CREATE TABLE IF NOT EXISTS io_target (line String) ENGINE = MergeTree ORDER BY line")
    out = tmp_path / "written.csv"

    with pytest.raises(DatabaseError, match=rf"Code: {code}\. DB::Exception: "):
        client.command(statement.format(out=out))

    assert not out.exists()
    assert client.command("SELECT count() FROM io_target") == 0


def test_the_words_file_and_url_in_strings_comments_and_data_are_accepted(client):
    text = client.query("SELECT 'file(''/etc/passwd'')' /* url('x') */ -- s3(").result_rows
    assert text == [("file('/etc/passwd')",)]
    client.command("CREATE TABLE io_words (id UInt32, text String) ENGINE = MergeTree ORDER BY id")

    client.raw_insert("io_words", ["id", "text"], "1,file('/etc/passwd')\n2,INTO OUTFILE x\n", fmt="CSV")
    client.insert("io_words", [[3, "url('http://example.com/')"]], column_names=["id", "text"])
    client.command("INSERT INTO io_words VALUES (4, 'FROM INFILE')")

    assert client.query("SELECT text FROM io_words ORDER BY id").result_rows == [
        ("file('/etc/passwd')",),
        ("INTO OUTFILE x",),
        ("url('http://example.com/')",),
        ("FROM INFILE",),
    ]


def test_the_harness_refuses_to_start_without_a_password(tmp_path):
    with pytest.raises(ValueError, match="needs a password"):
        ClickHouseEndpoint(tmp_path, user=USER, password="")


def test_the_command_line_refuses_to_serve_without_a_password(tmp_path):
    environment = {name: value for name, value in os.environ.items() if name != "DEVSTACK_CLICKHOUSE_PASSWORD"}
    environment["PYTHONPATH"] = os.path.dirname(os.path.dirname(clickhouse_endpoint.__file__))
    command = [sys.executable, "-m", "clickhouse_endpoint", "serve", "--port", "0", "--data-dir", str(tmp_path / "db")]

    refused = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=30, check=False)

    assert refused.returncode == 2
    assert "a password is required" in refused.stderr
    assert not (tmp_path / "db").exists()


def test_an_explicitly_insecure_endpoint_serves_without_a_password(tmp_path):
    with (
        ClickHouseEndpoint(tmp_path, insecure_no_password=True) as insecure,
        clickhouse_connect.get_client(host="127.0.0.1", port=insecure.port) as anyone,
    ):
        assert anyone.command("SELECT 1") == 1


def test_a_user_of_the_grant_table_may_run_only_what_it_was_granted(tmp_path):
    grants = {"ch_lms": {"password": "lms", "grants": {"event_sink": ["INSERT", "SELECT", "DELETE"]}}}
    with ClickHouseEndpoint(tmp_path / "data", user="admin", password="secret", grants=grants) as endpoint:
        admin = clickhouse_connect.get_client(port=endpoint.port, username="admin", password="secret")
        admin.command("CREATE DATABASE event_sink")
        admin.command("CREATE TABLE event_sink.t (id Int32, name String) ENGINE = MergeTree ORDER BY id")
        lms = clickhouse_connect.get_client(port=endpoint.port, username="ch_lms", password="lms")

        lms.insert("event_sink.t", [(1, "a")], column_names=("id", "name"))
        assert lms.query("SELECT count() FROM event_sink.t").result_rows == [(1,)]
        lms.command("ALTER TABLE event_sink.t DELETE WHERE id = 1")
        for refused in (
            "ALTER TABLE event_sink.t UPDATE name = '' WHERE id = 1",
            "CREATE TABLE event_sink.u (id Int32) ENGINE = MergeTree ORDER BY id",
            "SELECT 1 FROM default.other",
        ):
            with pytest.raises(DatabaseError, match="ACCESS_DENIED"):
                lms.command(refused)

    checks = [(check["privilege"], check["database"], check["allowed"]) for check in endpoint.grant_checks()]
    assert ("ALTER UPDATE", "event_sink", False) in checks
    assert ("CREATE TABLE", "event_sink", False) in checks
    assert ("ALTER DELETE", "event_sink", True) in checks
