"""Interrupted runs continue with --resume, sending nothing ClickHouse already acknowledged."""

import pytest
from common.djangoapps.student.models import UserProfile
from django.core.management import CommandError

from aspects_sink.models import DumpCheckpoint, VersionTick

pytestmark = pytest.mark.django_db


@pytest.fixture
def merges_stopped(backfill_clickhouse):
    """Keep every inserted row visible in count(), so a batch sent twice would show."""
    backfill_clickhouse.command("SYSTEM STOP MERGES event_sink_backfill.user_profile")
    yield
    backfill_clickhouse.command("SYSTEM START MERGES event_sink_backfill.user_profile")


@pytest.fixture
def ctrl_c_after(monkeypatch):
    """Press Ctrl-C, once, when ``batches`` batches are done and the next one begins."""

    def arm(batches: int):
        allocate = VersionTick.allocate
        started = []

        def interrupted_after_enough_batches():
            if len(started) == batches:
                monkeypatch.setattr(VersionTick, "allocate", allocate)
                raise KeyboardInterrupt
            started.append(True)
            return allocate()

        monkeypatch.setattr(VersionTick, "allocate", interrupted_after_enough_batches)

    return arm


@pytest.mark.usefixtures("merges_stopped")
def test_ctrl_c_then_resume_sends_every_row_exactly_once(backfill_clickhouse, dump, summary, learners, ctrl_c_after):
    learners(10)
    ctrl_c_after(batches=2)

    with pytest.raises(CommandError, match=r"^user_profile: interrupted\. Run again with --resume"):
        dump("--object", "user_profile", "--batch_size", "3")

    checkpoint = DumpCheckpoint.objects.get(sink="user_profile")
    assert (checkpoint.state, checkpoint.rows) == (DumpCheckpoint.STOPPED, 6)
    assert checkpoint.last_acknowledged == str(UserProfile.objects.order_by("id")[5].id)
    assert backfill_clickhouse.count("user_profile") == 6

    output = dump("--object", "user_profile", "--resume")

    assert summary(output)["user_profile"] == (4, 0, 0)
    assert "user_profile: 10 to go, 6 done before" in output
    assert backfill_clickhouse.count("user_profile") == 10  # nothing sent twice (merges are stopped)
    assert backfill_clickhouse.count("user_profile", final=True) == 10
    checkpoint.refresh_from_db()
    assert (checkpoint.state, checkpoint.rows) == (DumpCheckpoint.DONE, 10)


def test_resume_keeps_the_interrupted_runs_limit(backfill_clickhouse, dump, learners, ctrl_c_after):
    learners(10)
    ctrl_c_after(batches=1)
    with pytest.raises(CommandError):
        dump("--object", "user_profile", "--batch_size", "2", "--limit", "5")

    dump("--object", "user_profile", "--resume", "--batch_size", "2")

    assert backfill_clickhouse.count("user_profile") == 5


def test_resume_with_other_selection_options_is_refused(backfill_clickhouse, dump, learners, ctrl_c_after):
    learners(4)
    ctrl_c_after(batches=1)
    with pytest.raises(CommandError):
        dump("--object", "user_profile", "--batch_size", "2", "--limit", "3")

    with pytest.raises(CommandError, match="its run was started with other limit"):
        dump("--object", "user_profile", "--resume", "--limit", "4")


def test_resume_into_another_clickhouse_database_is_refused(backfill_clickhouse, dump, learners, ctrl_c_after):
    learners(4)
    ctrl_c_after(batches=1)
    with pytest.raises(CommandError):
        dump("--object", "user_profile", "--batch_size", "2")

    wrote_elsewhere = r"its run wrote to .* database event_sink_backfill, not .* database default"
    with pytest.raises(CommandError, match=wrote_elsewhere):
        dump("--object", "user_profile", "--resume", "--database", "default")


def test_resume_after_a_complete_run_has_nothing_to_do(backfill_clickhouse, dump, learners):
    learners(3)
    dump("--object", "user_profile")

    output = dump("--object", "user_profile", "--resume")

    assert "already complete" in output
    assert backfill_clickhouse.count("user_profile") == 3


def test_a_new_run_starts_over(backfill_clickhouse, dump, learners, ctrl_c_after):
    learners(4)
    ctrl_c_after(batches=1)
    with pytest.raises(CommandError):
        dump("--object", "user_profile", "--batch_size", "2")

    dump("--object", "user_profile")

    checkpoint = DumpCheckpoint.objects.get(sink="user_profile")
    # from the first key: the two profiles the interrupted run sent are read again, and skipped as unchanged
    assert (checkpoint.state, checkpoint.rows, checkpoint.skipped) == (DumpCheckpoint.DONE, 2, 2)


def test_resume_of_a_run_of_every_sink_dumps_the_sinks_it_never_reached(
    backfill_clickhouse, dump, summary, learners, ctrl_c_after
):
    """
    A run of every sink stopped in its first sink: the sinks after it never started. --resume dumps them too,
    instead of taking the checkpoints of an earlier, finished run for theirs ("already complete").
    """
    learners(3)
    dump("--force")  # an earlier run, finished: every sink's checkpoints done
    first_run = summary(dump("--force"))
    ctrl_c_after(batches=0)
    with pytest.raises(CommandError, match=r"interrupted\. Run again with --resume"):
        dump("--force")

    resumed = dump("--resume")

    assert "already complete" not in resumed and "no run to resume" not in resumed
    assert summary(resumed) == first_run  # every sink, every object, once
