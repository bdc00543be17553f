"""What the operator sees: a bar on a terminal, log lines elsewhere, and a summary table at the end."""

import io
import re

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from aspects_sink.progress import (
    LogProgress,
    SilentProgress,
    SummaryColumn,
    TerminalProgress,
    format_duration,
    format_table,
    progress_reporter,
)


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.mark.django_db
def test_without_a_terminal_progress_is_plain_lines_and_a_summary_table(backfill_clickhouse, dump, learners):
    learners(10)

    output = dump("--object", "user_profile", "--batch_size", "2")

    lines = output.splitlines()
    assert lines[0] == "user_profile: 10 to go"
    assert re.fullmatch(r"user_profile: 2/10 \(20%\), [\d,]+ rows/s, \d+s elapsed, ETA \S+", lines[1])
    assert re.fullmatch(r"user_profile: finished, 10/10 \(100%\), [\d,]+ rows/s, \d+s elapsed", lines[5])
    assert "\r" not in output
    assert lines[6].split() == ["object", "rows", "skipped", "failed", "seconds", "rows/s"]
    assert lines[8].split()[:4] == ["user_profile", "10", "0", "0"]


@pytest.mark.django_db
def test_on_a_terminal_progress_is_a_bar_redrawn_in_place(backfill_clickhouse, learners):
    learners(4)
    terminal = Terminal()

    call_command("dump_data_to_clickhouse", "--object", "user_profile", "--sleep_time", "0", stdout=terminal)

    bar_line, *table = terminal.getvalue().split("\n")
    assert bar_line.startswith("\ruser_profile |")
    assert bar_line.rstrip("\x1b[K").endswith("elapsed")
    assert "4/4 (100%)" in bar_line.split("\r")[-1]
    assert table[0].startswith("object")


@pytest.mark.django_db
def test_no_progress_prints_only_the_summary(backfill_clickhouse, dump, learners):
    learners(3)

    output = dump("--object", "user_profile", "--batch_size", "1", "--no-progress")

    assert output.splitlines()[0].startswith("object")
    assert "to go" not in output


@pytest.mark.django_db
@pytest.mark.parametrize(("arguments", "counted"), [((), True), (("--no-progress",), False)])
def test_objects_are_counted_first_only_for_a_progress_display(backfill_clickhouse, dump, learners, arguments, counted):
    learners(3)

    with CaptureQueriesContext(connection) as queries:
        dump("--object", "user_profile", *arguments)

    assert any("COUNT(" in query["sql"].upper() for query in queries.captured_queries) is counted
    assert backfill_clickhouse.count("user_profile") == 3


def test_the_reporter_suits_the_stream():
    assert isinstance(progress_reporter(Terminal()), TerminalProgress)
    assert isinstance(progress_reporter(io.StringIO()), LogProgress)
    assert isinstance(progress_reporter(Terminal(), enabled=False), SilentProgress)


def test_the_bar_shows_rate_and_time_left():
    clock, terminal = Clock(), Terminal()
    bar = TerminalProgress(terminal, clock=clock)

    bar.start("user_profile", total=1000)
    clock.now += 2
    bar.advance(250)

    last = terminal.getvalue().split("\r")[-1]
    assert "250/1,000 (25%), 125 rows/s, 2s elapsed, ETA 6s" in last
    assert "███████" in last


def test_log_lines_come_every_tenth_and_every_interval():
    clock, stream = Clock(), io.StringIO()
    log = LogProgress(stream, interval=60, clock=clock)

    log.start("course_enrollment", total=100, done=40)
    for _ in range(6):
        clock.now += 1
        log.advance(5)  # 45 ... 70: tenths 50, 60 and 70 are crossed
    clock.now += 61
    log.advance(1)  # no tenth crossed, but the interval has passed
    log.finish()

    lines = stream.getvalue().splitlines()
    assert lines[0] == "course_enrollment: 100 to go, 40 done before"
    assert [line.split(" (")[0] for line in lines[1:-1]] == [
        "course_enrollment: 50/100",
        "course_enrollment: 60/100",
        "course_enrollment: 70/100",
        "course_enrollment: 71/100",
    ]
    assert "5 rows/s" in lines[1]  # the rate counts this run's work only
    assert lines[-1].startswith("course_enrollment: finished, 71/100 (71%)")


def test_durations_are_short():
    assert [format_duration(seconds) for seconds in (0.4, 42, 187, 7500)] == ["0s", "42s", "3m07s", "2h05m"]


def test_tables_align_numbers_right_and_text_left():
    columns = (SummaryColumn("name", str, align_right=False), SummaryColumn("count", lambda row: f"{len(row):,}"))

    assert format_table(columns, ["ab", "abcdefghijkl"]).splitlines() == [
        "name          count",
        "------------  -----",
        "ab                2",
        "abcdefghijkl     12",
    ]
