"""The transport: errors sorted into wait-or-reject, secrets kept out of text, tables written by name."""

from __future__ import annotations

import logging

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from aspects_sink.transport import (
    ClickHouseMisconfigured,
    ClickHouseRejected,
    ClickHouseUnavailable,
    ColumnBatch,
    ConnectionConfig,
)
from aspects_sink.transport.client import ClickHouseTransport, _client_arguments, classify


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (OperationalError("connection refused"), ClickHouseUnavailable),
        (DatabaseError("Code: 516. DB::Exception: default: Authentication failed"), ClickHouseMisconfigured),
        (DatabaseError("Code: 252. DB::Exception: Too many parts"), ClickHouseUnavailable),
        (DatabaseError("Code: 60. DB::Exception: Table x does not exist"), ClickHouseMisconfigured),
        (DatabaseError("Code: 469. DB::Exception: Constraint violated"), ClickHouseRejected),
        (DatabaseError("Code: 27. DB::Exception: Cannot parse input"), ClickHouseRejected),
        (DatabaseError("Code: 701. DB::Exception: Requested cluster 'x' not found"), ClickHouseMisconfigured),
        (DatabaseError("Code: 48. DB::Exception: Table engine Log doesn't support mutations"), ClickHouseMisconfigured),
        (DatabaseError("Code: 473. DB::Exception: Locking attempt timed out"), ClickHouseUnavailable),
        (DatabaseError("Code: 517. DB::Exception: Metadata changed concurrently"), ClickHouseUnavailable),
        (DatabaseError("Code: 218. DB::Exception: Table is dropped"), ClickHouseUnavailable),
        (DatabaseError("Code: 574. DB::Exception: Too many bytes pending"), ClickHouseUnavailable),
        (DatabaseError("Code: 745. DB::Exception: The server is overloaded"), ClickHouseUnavailable),
    ],
)
def test_errors_are_sorted_into_wait_pause_or_reject(error, kind):
    assert isinstance(classify(error, "insert"), kind)


def test_the_password_never_shows():
    config = ConnectionConfig(url="https://admin:hunter2@ch.example.com:8443/", password="hunter2")
    assert "hunter2" not in repr(config)
    assert "hunter2" not in config.safe_url
    assert "hunter2" not in repr(ClickHouseTransport(config))


@pytest.mark.parametrize(
    "url", ["http://lms:hun/ter2@ch.example.com:8123/", "http://lms:hun#ter2@ch.example.com:8123/"]
)
def test_a_url_whose_password_is_not_encoded_is_a_configuration_error_that_shows_none_of_it(url):
    """A '/' or '#' in a password written into the URL unencoded ends its host part early: no port, no secret."""
    config = ConnectionConfig(url=url)
    for shown in (repr(config), config.safe_url):
        assert "hun" not in shown and "ter2" not in shown
    with pytest.raises(ClickHouseMisconfigured) as error:
        ClickHouseTransport(config).ping()
    assert "percent-encode" in str(error.value) and "hun" not in str(error.value) and "ter2" not in str(error.value)


def test_credentials_in_the_url_are_percent_decoded():
    arguments = _client_arguments(ConnectionConfig(url="https://lms%2Bro:p%40ss%2Fword@ch.example.com:8443/"))
    assert (arguments["username"], arguments["password"], arguments["port"]) == ("lms+ro", "p@ss/word", 8443)


def test_unreachable_server_is_unavailable_and_names_no_secret(caplog):
    caplog.set_level(logging.DEBUG)
    transport = ClickHouseTransport(
        ConnectionConfig(url="http://127.0.0.1:9/", username="u", password="hunter2", timeout_secs=1)
    )
    with pytest.raises(ClickHouseUnavailable) as error:
        transport.ping()
    assert "127.0.0.1:9" in str(error.value)
    assert "hunter2" not in str(error.value) and "hunter2" not in caplog.text


def test_a_batch_rejects_ragged_columns():
    with pytest.raises(ValueError, match="different row counts"):
        ColumnBatch("t", ("a", "b"), ("Int32", "Int32"), ([1, 2], [1]))


def test_statements_take_values_as_parameters(embedded_clickhouse):
    hostile = "x'); DROP TABLE event_sink.user_profile; --"
    assert embedded_clickhouse.rows("SELECT {v:String}", {"v": hostile}) == [(hostile,)]


@pytest.mark.parametrize(
    ("timeouts", "connect", "read"),
    [({}, 5, 30), ({"timeout_secs": 3, "read_timeout_secs": 5}, 3, 5), ({"timeout_secs": 60}, 60, 60)],
)
def test_an_answer_is_awaited_for_the_longer_timeout(timeouts, connect, read):
    arguments = _client_arguments(ConnectionConfig(url="http://ch.example.com:8123/", **timeouts))
    assert (arguments["connect_timeout"], arguments["send_receive_timeout"]) == (connect, read)
