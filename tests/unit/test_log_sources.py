"""
Where the history import finds logs, as ``transform_tracking_logs`` finds them: a LOCAL container walked as
libcloud walks it, the day of a log from its key, ``s3://`` URLs taken as written, S3's refusals told apart.
"""

from __future__ import annotations

import datetime
import json

import pytest
from botocore.exceptions import ClientError

from aspects_sink.xapi.sources import LogObject, S3Location, SourceError, _S3Errors, source_from_argument
from aspects_sink.xapi.sources import source_from_erb_options as erb_source

LONG_AGO = datetime.datetime(2025, 6, 30, 12, tzinfo=datetime.UTC)


def log(key: str) -> LogObject:
    return LogObject("s3://logs", key, 1, LONG_AGO)


def test_a_local_container_is_walked_and_its_prefix_matched_against_paths_in_it(tmp_path):
    """libcloud's LOCAL driver lists a container's files recursively, by their path in it."""
    container = tmp_path / "logs"
    for path in ("2023/05/tracking.log-20230502.gz", "2023/05/tracking.log-20230501.gz", "2024/tracking.log", "x"):
        (container / path).parent.mkdir(parents=True, exist_ok=True)
        (container / path).write_bytes(b"{}\n")

    config = {"key": str(tmp_path), "container": "logs", "prefix": "2023/"}
    listed = [item.key for item in erb_source("LOCAL", json.dumps(config)).objects()]

    assert listed == [
        str(container / "2023/05/tracking.log-20230501.gz"),
        str(container / "2023/05/tracking.log-20230502.gz"),
    ]


@pytest.mark.parametrize(
    ("key", "day"),
    [
        ("tracking/tracking.log-20260102.gz", datetime.date(2026, 1, 2)),  # logrotate's date extension
        ("tracking/2023/05/01/part-0001.gz", datetime.date(2023, 5, 1)),  # a log shipper's folders
        ("tracking/2023-05-01/part-0001.gz", datetime.date(2023, 5, 1)),
        ("tracking/2023/05/01/tracking.log-20230502.gz", datetime.date(2023, 5, 2)),  # the name first
        ("exports/export-20241131.csv", LONG_AGO.date()),  # no such day: when it was written
        ("tracking/20241131-20241130.log", datetime.date(2024, 11, 30)),  # the first day that exists
        ("tracking/tracking.log", LONG_AGO.date()),
    ],
)
def test_the_day_of_a_log_comes_from_its_key_else_from_when_it_was_written(key, day):
    assert log(key).day == day


def test_an_s3_url_is_taken_as_written():
    source = source_from_argument("s3://logs/tracking/a#b?c")
    assert (source.location.bucket, source.location.prefix) == ("logs", "tracking/a#b?c")
    with pytest.raises(SourceError, match="no bucket"):
        source_from_argument("s3:///tracking/")


def test_access_denied_is_told_apart_from_refused_credentials():
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "ListObjectsV2")
    with pytest.raises(SourceError) as error, _S3Errors(S3Location("logs", "tracking/"), ""):
        raise denied
    assert str(error.value) == (
        "s3://logs/tracking/: S3 denied access (AccessDenied): the credentials were accepted, but may not list or "
        "read these objects (s3:ListBucket, s3:GetObject; a bucket policy, or a KMS key the role may not use)"
    )
