"""
``aspects_sink_xapi_history`` over object storage (moto's S3 server in its own process): the rotated,
gzipped tracking logs of learners' activity under a prefix arrive once, with the live route's statement
ids, filtered by the day in their names; ERB's ``--source_provider``/``--source_config`` read the same;
wrong credentials, a missing bucket and a corrupt object give clear errors, the last without stopping
the run.
"""

from __future__ import annotations

import datetime
import gzip
import json
import socket
import ssl
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from common.djangoapps.student.helpers import create_user
from devstack_tools import learner_activity as activity
from django.core.management import CommandError, call_command
from xmodule.modulestore.course_builder import create_course

from aspects_sink.models import XapiStatement
from aspects_sink.sinks.base import Stamp
from aspects_sink.sinks.xapi_statements import XapiStatementSink, raw_table
from aspects_sink.xapi.history import LogImporter
from aspects_sink.xapi.sources import LogObject, S3Location, S3Source
from tests.support.object_storage import rotated_logs

DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]


@pytest.fixture
def activity_lines(db) -> list[str]:
    """Three learners' two rounds in a course, sent live (30 events queued) and as tracking-log lines."""
    course = activity.CourseBlocks.of(create_course("BucketX", uuid.uuid4().hex[:8], "2026", "Bucket", blocks=60))
    learners = [create_user(f"bucket{i}", f"bucket{i}@example.com", name=f"Bucket {i}") for i in range(3)]
    with activity.recording() as events:
        for step in range(2):
            for learner in learners:
                activity.emit(learner, course, activity.round_of_events(learner, course, step))
    lines = [activity.tracking_log_line(event) for event in events]
    lines.insert(5, '{"name": "edx.bi.user.account.registered", "event": {}, "time": "2026-01-01T00:00:00+00:00"}')
    return lines


def live_ids() -> list[str]:
    """The ids of the statements the live route's drain makes of the queued events."""
    entries = [str(pk) for pk in XapiStatement.objects.values_list("pk", flat=True)]
    (batch,) = XapiStatementSink().writes_for(entries, Stamp(version=1))
    return sorted(str(event_id) for event_id in batch.columns[0])


def history_ids(transport, *, final: bool = False) -> list[str]:
    table = raw_table().insert_target
    query = f"SELECT toString(event_id) FROM {table}{' FINAL' if final else ''}"
    return sorted(row[0] for row in transport.rows(query))


def new_bucket() -> str:
    return f"logs-{uuid.uuid4().hex[:12]}"


def run(*arguments: str, capsys) -> str:
    call_command("aspects_sink_xapi_history", *arguments, "--no-progress")
    return capsys.readouterr().out


def test_a_buckets_logs_arrive_once_with_the_live_routes_ids(
    devstack_clickhouse, s3_environment, activity_lines, capsys
):
    bucket = new_bucket()
    s3_environment.bucket_of_logs(
        bucket,
        {
            **rotated_logs(activity_lines, "tracking/", DAYS),
            "tracking/tracking.log-20251231.gz": activity_lines,  # before --from-date: left out
            "elsewhere/tracking.log": activity_lines,  # not under the prefix
        },
    )
    url = f"s3://{bucket}/tracking/"

    dry = run(url, "--from-date", DAYS[0], "--dry-run", capsys=capsys)
    assert "3 logs" in dry and "31 lines, 30 events" in dry  # the registration is no xAPI event
    assert all(f"tracking.log-{day.replace('-', '')}.gz" in dry for day in DAYS)
    assert history_ids(devstack_clickhouse) == []

    out = run(url, "--from-date", DAYS[0], "--batch_size", "7", capsys=capsys)
    assert "3 logs" in out and "31 lines read: 30 statements written" in out
    assert history_ids(devstack_clickhouse) == live_ids()  # every statement once, the live route's ids

    # transform_tracking_logs' options, as an operator already runs it against MinIO
    erb_config = {
        "container": bucket,
        "prefix": "tracking/tracking.log-2026",
        "key": s3_environment.credentials.access_key,
        "secret": s3_environment.credentials.secret_key,
        "host": "127.0.0.1",
        "port": s3_environment.port,
        "secure": False,
    }
    erb_options = ("--source_provider", "MINIO", "--source_config", json.dumps(erb_config), "--transformer_type=xapi")
    assert "0 lines read" in run(*erb_options, "--resume", capsys=capsys)  # all done before: nothing read again
    assert "31 lines read: 30 statements written" in run(*erb_options, capsys=capsys)  # again, from the start
    assert history_ids(devstack_clickhouse, final=True) == live_ids()  # collapsed


def test_to_date_takes_the_log_rotated_the_day_after_which_holds_that_days_last_events(
    devstack_clickhouse, s3_environment, activity_lines, capsys
):
    bucket = new_bucket()
    s3_environment.bucket_of_logs(bucket, rotated_logs(activity_lines, "", DAYS))

    dry = run(f"s3://{bucket}/", "--from-date", DAYS[0], "--to-date", DAYS[0], "--dry-run", capsys=capsys)

    # logrotate's date extension names a log after the day it rotated: the events up to that night
    assert "tracking.log-20260101.gz" in dry and "tracking.log-20260102.gz" in dry
    assert "tracking.log-20260103.gz" not in dry and "2 logs" in dry


def test_wrong_credentials_and_a_missing_bucket_are_named_and_no_secret_is_shown(
    devstack_clickhouse, s3_environment, activity_lines, monkeypatch
):
    bucket = new_bucket()
    s3_environment.bucket_of_logs(bucket, rotated_logs(activity_lines, "", DAYS))

    with pytest.raises(CommandError, match=f"bucket '{bucket}x' does not exist"):
        call_command("aspects_sink_xapi_history", f"s3://{bucket}x/", "--no-progress")

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-123")
    with pytest.raises(CommandError, match=r"refused the credentials \(SignatureDoesNotMatch\)") as refused:
        call_command("aspects_sink_xapi_history", f"s3://{bucket}/", "--no-progress")
    assert f"s3://{bucket}/" in str(refused.value) and "not-the-secret-123" not in str(refused.value)

    config = {"container": bucket, "prefix": "", "key": "AKIAUNKNOWN", "secret": "s3cr3t-value", "host": "127.0.0.1"}
    config |= {"port": s3_environment.port, "secure": False}
    with pytest.raises(CommandError, match=r"refused the credentials \(InvalidAccessKeyId\)") as unknown:
        call_command("aspects_sink_xapi_history", "--source_provider=S3", f"--source_config={json.dumps(config)}")
    assert "s3cr3t-value" not in str(unknown.value)
    assert history_ids(devstack_clickhouse) == []


def test_a_corrupt_object_is_reported_and_the_others_go_in(devstack_clickhouse, s3_environment, activity_lines, capsys):
    bucket = new_bucket()
    logs = rotated_logs(activity_lines, "", DAYS)
    s3_environment.bucket_of_logs(bucket, logs)
    good = gzip.compress(b"".join(line.encode() + b"\n" for line in activity_lines[:5]))
    corrupt = good[: len(good) // 2] + b"\x00" * 40 + good[len(good) // 2 :]  # a damaged member
    s3_environment.client().put_object(Bucket=bucket, Key="tracking.log-20260102-corrupt.gz", Body=corrupt)

    with pytest.raises(CommandError, match="1 log could not be read to the end"):
        call_command("aspects_sink_xapi_history", f"s3://{bucket}/", "--dry-run")
    assert "corrupt gzip" in capsys.readouterr().out

    with pytest.raises(CommandError, match="1 log could not be read to the end"):
        call_command("aspects_sink_xapi_history", f"s3://{bucket}/", "--no-progress", "--batch_size", "4")
    output = capsys.readouterr()
    assert f"s3://{bucket}/tracking.log-20260102-corrupt.gz: line " in output.err
    assert "corrupt gzip" in output.err
    assert "3 logs could not" not in output.err
    assert set(history_ids(devstack_clickhouse)) == set(live_ids())  # the good logs, whole


class CutShort(BaseHTTPRequestHandler):
    """
    An S3 endpoint whose connection breaks while an object streams: it promises more bytes than it sends. Over
    TLS, what comes instead is a record that fails to decrypt, as a broken proxy's would.
    """

    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body) + 10_000))
        self.end_headers()
        self.wfile.write(self.body)
        self.wfile.flush()
        if isinstance(self.connection, ssl.SSLSocket):  # an application-data record of garbage, under TLS
            socket.socket.sendall(self.connection, b"\x17\x03\x03\x00\x20" + bytes(range(32)))
        self.close_connection = True  # the rest never comes

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_certificate(tmp_path, monkeypatch):
    """A certificate for 127.0.0.1 that boto3 trusts (``AWS_CA_BUNDLE``): (certificate, key) files."""
    certificate, key = tmp_path / "loopback.pem", tmp_path / "loopback.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(certificate)),
        ],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("AWS_CA_BUNDLE", str(certificate))
    return certificate, key


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_connection_broken_while_an_object_streams_reports_that_log_and_keeps_its_lines(
    devstack_clickhouse, activity_lines, scheme, request
):
    """Over TLS, a broken record is urllib3's SSLError, which botocore lets through: the log is reported the same."""
    events = gzip.compress(b"".join(line.encode() + b"\n" for line in activity_lines))
    CutShort.body = events + gzip.compress(b"\n" * 3 * 2**20, compresslevel=0)  # blank lines, read a MiB at a time
    server = ThreadingHTTPServer(("127.0.0.1", 0), CutShort)
    if scheme == "https":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*request.getfixturevalue("loopback_certificate"))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"{scheme}://127.0.0.1:{server.server_port}"
        source = S3Source(S3Location("logs", endpoint_url=endpoint, access_key="key", secret_key="secret"))
        log = LogObject(
            source.url, "tracking.log-20260101.gz", len(CutShort.body) + 10_000, datetime.datetime.now(datetime.UTC)
        )
        importer = LogImporter(source, devstack_clickhouse, batch_size=100, sleep_time=0)

        report = importer.import_log(log, 0, lambda *_: None)
    finally:
        server.shutdown()

    assert report.error.startswith("s3://logs/tracking.log-20260101.gz: the connection broke")
    assert report.statements == 30  # the lines of the reads before the break, imported
    assert set(history_ids(devstack_clickhouse)) == set(live_ids())


def test_a_log_rewritten_since_its_checkpoint_is_read_again_from_its_start(
    devstack_clickhouse, activity_lines, tmp_path, capsys
):
    """A checkpoint belongs to one state of its log: the same size, rewritten later, is another log."""
    import os

    log = tmp_path / "tracking.log"
    log.write_text("\n".join(activity_lines[:10]) + "\n")
    assert "10 lines read" in run(str(log), capsys=capsys)
    assert "0 lines read" in run(str(log), "--resume", capsys=capsys)

    log.write_text("\n".join(reversed(activity_lines[:10])) + "\n")  # as many bytes, written again
    later = log.stat().st_mtime + 60
    os.utime(log, (later, later))
    assert "10 lines read" in run(str(log), "--resume", capsys=capsys)


def test_a_prefix_or_days_with_no_log_is_an_error_naming_where_it_looked(
    devstack_clickhouse, s3_environment, activity_lines
):
    """An import of nothing is no success: a prefix mistyped, or days outside the logs, says so."""
    bucket = new_bucket()
    s3_environment.bucket_of_logs(bucket, rotated_logs(activity_lines, "tracking/", DAYS))

    for dry_run in ((), ("--dry-run",)):
        with pytest.raises(CommandError, match=rf"^no tracking log in s3://{bucket}/trackign/$"):
            call_command("aspects_sink_xapi_history", f"s3://{bucket}/trackign/", "--no-progress", *dry_run)
    with pytest.raises(CommandError, match=rf"^no tracking log of 2027-01-01 or later in s3://{bucket}/tracking/$"):
        call_command("aspects_sink_xapi_history", f"s3://{bucket}/tracking/", "--from-date", "2027-01-01")
