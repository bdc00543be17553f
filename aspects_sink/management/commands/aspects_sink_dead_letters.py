"""List dead letters (outbox entries that failed too often) and replay them."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from aspects_sink import outbox, tasks
from aspects_sink.models import OutboxEntry


class Command(BaseCommand):
    """``./manage.py lms aspects_sink_dead_letters [--replay] [--sink NAME] [--id N ...]``."""

    help = "Show the outbox entries parked as dead letters, with their errors; --replay queues them again."

    def add_arguments(self, parser):
        parser.add_argument("--replay", action="store_true", help="queue the selected dead letters again")
        parser.add_argument("--sink", help="only this sink's dead letters")
        parser.add_argument("--id", type=int, nargs="+", dest="ids", help="only these entry ids")
        parser.add_argument("--limit", type=int, default=50, help="how many to list (default 50)")

    def handle(self, *args, **options):
        if options["replay"]:
            count = outbox.replay_dead_letters(ids=options["ids"], sink_name=options["sink"])
            woken = tasks.sweep()
            self.stdout.write(f"{count} dead letters queued again; drains woken: {', '.join(woken) or 'none'}.")
            return
        dead = OutboxEntry.objects.filter(state=OutboxEntry.DEAD).order_by("id")
        if options["sink"]:
            dead = dead.filter(sink=options["sink"])
        if options["ids"]:
            dead = dead.filter(id__in=options["ids"])
        total = dead.count()
        for entry in dead[: options["limit"]]:
            self.stdout.write(
                f"{entry.id}\t{entry.sink}\t{entry.object_id}\t{entry.attempts} tries\t{entry.last_error}"
            )
        self.stdout.write(f"{total} dead letters.")
