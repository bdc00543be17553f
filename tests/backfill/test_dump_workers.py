"""--workers without a worker: a clear error after the timeout, and tasks that arrive late do nothing."""

import pytest
from common.djangoapps.student.models import UserProfile
from django.core.management import CommandError

from aspects_sink.backfill import checkpoints, workers
from aspects_sink.backfill.source import BackfillSource
from aspects_sink.models import DumpCheckpoint
from aspects_sink.sinks.registry import get_sink

pytestmark = pytest.mark.django_db


@pytest.mark.timeout(120)  # fails only if the command waits for a worker forever
def test_without_a_worker_the_command_fails_after_the_timeout(backfill_clickhouse, dump, learners):
    learners(6)

    with pytest.raises(CommandError, match="no Celery worker picked up the backfill tasks within 1s") as raised:
        dump("--object", "user_profile", "--workers", "2", "--worker_timeout", "1")

    assert "\n" not in str(raised.value)
    ranges = list(DumpCheckpoint.objects.filter(sink="user_profile"))
    assert len(ranges) == 2
    assert {checkpoint.state for checkpoint in ranges} == {DumpCheckpoint.STOPPED}
    assert backfill_clickhouse.count("user_profile") == 0


def test_a_task_for_a_range_given_up_on_does_nothing(backfill_clickhouse, dump, learners):
    learners(4)
    with pytest.raises(CommandError):
        dump("--object", "user_profile", "--workers", "1", "--worker_timeout", "0.5")
    row = DumpCheckpoint.objects.get(sink="user_profile")

    workers.run_dispatched(row.id, str(row.token))  # the worker finally gets to it

    row.refresh_from_db()
    assert row.state == DumpCheckpoint.STOPPED
    assert backfill_clickhouse.count("user_profile") == 0


def test_a_task_dumps_its_range_only(backfill_clickhouse, learners):
    learners(9)
    parameters = checkpoints.RunParameters(batch_size=2, sleep_time=0)
    keys = list(UserProfile.objects.order_by("id").values_list("id", flat=True))
    (row,) = checkpoints.begin("user_profile", parameters, [(str(keys[2]), str(keys[6]))])
    token = checkpoints.hand_out(row)

    workers.run_dispatched(row.id, str(token))

    row.refresh_from_db()
    assert (row.state, row.rows, row.last_acknowledged) == (DumpCheckpoint.DONE, 4, str(keys[6]))
    assert backfill_clickhouse.column("user_profile", "id") == keys[3:7]


def test_split_cuts_the_keys_into_equal_ranges(backfill_clickhouse, learners):
    learners(10)
    source = BackfillSource(get_sink("user_profile"))
    keys = [str(key) for key in source.between().values_list("pk", flat=True)]

    assert workers.split(source, "", 3) == [("", keys[2]), (keys[2], keys[5]), (keys[5], "")]
    assert workers.split(source, keys[7], 4) == [(keys[7], keys[8]), (keys[8], "")]


def test_ranges_given_up_on_are_finished_by_resume_in_this_process(backfill_clickhouse, dump, summary, learners):
    learners(7)
    with pytest.raises(CommandError):
        dump("--object", "user_profile", "--workers", "3", "--worker_timeout", "0.5", "--batch_size", "2")

    output = dump("--object", "user_profile", "--resume", "--batch_size", "2")

    assert summary(output)["user_profile"] == (7, 0, 0)
    assert backfill_clickhouse.count("user_profile") == 7
    states = DumpCheckpoint.objects.filter(sink="user_profile").values_list("state", flat=True)
    assert list(states) == [DumpCheckpoint.DONE] * 3


def test_ctrl_c_while_waiting_stops_the_ranges_so_workers_stop_too(backfill_clickhouse, dump, learners, monkeypatch):
    learners(4)

    def pressed_ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(workers, "wait", pressed_ctrl_c)

    with pytest.raises(CommandError, match=r"^user_profile: interrupted\. Run again with --resume"):
        dump("--object", "user_profile", "--workers", "2")

    ranges = DumpCheckpoint.objects.filter(sink="user_profile")
    assert {(checkpoint.state, checkpoint.last_error) for checkpoint in ranges} == {
        (DumpCheckpoint.STOPPED, "interrupted (Ctrl-C)")
    }


def test_a_worker_that_cannot_set_its_range_up_stops_it_saying_why(backfill_clickhouse):
    """A worker of another release (a rolling deploy) that knows no such sink: the command learns why at once."""
    parameters = checkpoints.RunParameters(batch_size=2, sleep_time=0)
    (row,) = checkpoints.begin("a_sink_of_a_later_release", parameters, [("", "")])
    token = checkpoints.hand_out(row)

    with pytest.raises(Exception, match="a_sink_of_a_later_release"):
        workers.run_dispatched(row.id, str(token))

    row.refresh_from_db()
    assert row.state == DumpCheckpoint.STOPPED and "a_sink_of_a_later_release" in row.last_error


def test_a_run_whose_ranges_another_run_replaced_fails(backfill_clickhouse, dump, learners, monkeypatch):
    """Another run started without --resume took the sink's checkpoints: this one did not finish, and says so."""
    learners(4)
    sleep = workers.time.sleep

    def another_run_starts(seconds):
        checkpoints.begin("user_profile", checkpoints.RunParameters(), [("", "")])
        sleep(seconds)

    monkeypatch.setattr(workers.time, "sleep", another_run_starts)

    with pytest.raises(CommandError, match=r"user_profile: .*another run .* took over"):
        dump("--object", "user_profile", "--workers", "2", "--worker_timeout", "30")


def test_a_resumed_run_on_workers_takes_its_batch_settings_from_this_command(backfill_clickhouse, dump, learners):
    """--resume keeps the first run's selection and ranges; how fast to go is this command's to say."""
    learners(4)
    with pytest.raises(CommandError):
        dump("--object", "user_profile", "--workers", "1", "--worker_timeout", "0.5", "--batch_size", "2")
    with pytest.raises(CommandError):
        dump("--object", "user_profile", "--workers", "1", "--worker_timeout", "0.5", "--resume", "--batch_size", "3")

    row = DumpCheckpoint.objects.get(sink="user_profile")
    assert checkpoints.RunParameters.from_json(row.parameters).batch_size == 3


def test_a_resumed_run_keeps_the_progress_made_since_it_read_the_checkpoints(backfill_clickhouse, learners):
    """
    A resumed run read the checkpoints of a run whose workers were still going (a pod killed mid ``--workers``
    run): taking a range over keeps what they acknowledged since, and a range they finished meanwhile stays done.
    """
    learners(4)
    source = BackfillSource(get_sink("user_profile"))
    params = checkpoints.RunParameters(target="event_sink.user_profile")
    first, second = checkpoints.begin("user_profile", params, [("", "2"), ("2", "")])
    DumpCheckpoint.objects.filter(pk__in=[first.pk, second.pk]).update(state=DumpCheckpoint.STOPPED)
    stale = checkpoints.unfinished(checkpoints.latest("user_profile"))  # what the resumed run read
    DumpCheckpoint.objects.filter(pk=first.pk).update(last_acknowledged="1", rows=1)  # a worker went on meanwhile
    DumpCheckpoint.objects.filter(pk=second.pk).update(state=DumpCheckpoint.DONE, rows=2)  # and finished that one

    assert checkpoints.hand_out(stale[1]) is None  # done: not handed out again
    checkpoint = checkpoints.RangeCheckpoint(stale[0], source)
    checkpoint.start()

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.last_acknowledged, first.rows, first.state) == ("1", 1, DumpCheckpoint.RUNNING)
    assert (checkpoint.after, checkpoint.done) == (1, 1)  # it goes on after what was acknowledged
    assert (second.state, second.rows) == (DumpCheckpoint.DONE, 2)
