"""Wake (or run) the drains of every sink with pending outbox entries: for cron, or when the broker was down."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from aspects_sink import delivery, outbox, scheduling, status


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
        pending = {name: summary for name, summary in outbox.summaries().items() if summary.pending}
        if not pending:
            self.stdout.write("Nothing pending.")
            return
        for sink_name, summary in sorted(pending.items()):
            if options["drain"]:
                report = delivery.drain(sink_name, time_budget=float("inf"))
                self.stdout.write(
                    f"{sink_name}: delivered {report.delivered}, retried {report.retried}, parked {report.parked}"
                )
            else:
                scheduled = scheduling.publish_drain(sink_name, 0)
                outcome = "scheduled" if scheduled else "NOT scheduled: is the broker up?"
                self.stdout.write(f"{sink_name}: {summary.pending} pending, drain {outcome}")
