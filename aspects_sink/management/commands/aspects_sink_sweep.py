"""Wake (or run) the drains of every sink with pending outbox entries: for cron, or when the broker was down."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from aspects_sink import delivery, health, outbox, scheduling, status
from aspects_sink.sinks.registry import all_sinks
from aspects_sink.xapi import backend


class Command(BaseCommand):
    """``./manage.py lms aspects_sink_sweep [--drain]``."""

    help = (
        "Schedule a Celery drain for every sink with pending outbox entries (what the periodic beat task "
        "does). With --drain, send them from this process instead, which needs no broker."
    )

    def add_arguments(self, parser):
        parser.add_argument("--drain", action="store_true", help="send pending entries now, in this process")

    def handle(self, *args, **options):
        status.record_sweep()  # run from cron instead of Celery beat, it is the periodic sweep
        taken = backend.take_over_erb_batch_queue()
        if taken:
            self.stdout.write(f"Recorded {taken} events event-routing-backends' batching had left in its queue.")
        pending = {name: summary for name, summary in outbox.summaries().items() if summary.pending}
        if not pending:
            self.stdout.write("Nothing pending.")
            return
        not_scheduled, not_sent, unknown = [], [], []
        known = all_sinks()
        for sink_name, summary in sorted(pending.items()):
            if sink_name not in known:
                self.stdout.write(f"{sink_name}: {summary.pending} pending, no such sink: not drained")
                unknown.append(sink_name)
            elif options["drain"]:
                report = delivery.drain(sink_name, time_budget=float("inf"))
                self.stdout.write(
                    f"{sink_name}: delivered {report.delivered}, retried {report.retried}, parked {report.parked}"
                )
                if report.retried or report.parked:
                    not_sent.append(sink_name)
                elif report.delivered < summary.pending and known[sink_name].is_enabled():  # what it found still waits
                    not_sent.append(f"{sink_name} ({_why_waiting(sink_name)})")
            else:
                scheduled = scheduling.publish_drain(sink_name, 0)
                outcome = "scheduled" if scheduled else "NOT scheduled: is the broker up?"
                self.stdout.write(f"{sink_name}: {summary.pending} pending, drain {outcome}")
                if not scheduled:
                    not_scheduled.append(sink_name)
        # Run from cron, the exit code is what anyone reads.
        if unknown:
            raise CommandError(
                "; ".join(
                    delivery.NO_SUCH_SINK.removeprefix("aspects_sink: ") % (name, pending[name].pending)
                    for name in unknown
                )
            )
        if not_scheduled:
            raise CommandError(f"could not schedule the drains of {', '.join(not_scheduled)}: is the broker up?")
        if not_sent:
            raise CommandError(
                f"entries of {', '.join(not_sent)} were not sent: retried, parked or still waiting (see above; "
                "aspects_sink_status tells why)"
            )


def _why_waiting(sink_name: str) -> str:
    """Why a sink's pending entries stayed: its pause, or when the next is due."""
    paused = health.pause_of(sink_name)
    if paused is not None:
        return f"paused: {paused.last_error}"
    due = outbox.queue(sink_name).next_due()
    return f"not due until {due:%Y-%m-%d %H:%M:%S %Z}" if due else "sent meanwhile by a worker"
