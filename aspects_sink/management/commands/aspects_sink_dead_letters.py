"""List dead letters (outbox entries and xAPI statements that failed too often) and replay them."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from aspects_sink import outbox
from aspects_sink.models import OutboxEntry
from aspects_sink.sinks.registry import all_sinks


class Command(BaseCommand):
    """``./manage.py lms aspects_sink_dead_letters [--replay] [--sink NAME] [--id N ...]``."""

    help = (
        "Show the entries parked as dead letters, with their errors: outbox entries of every sink, and xAPI "
        "statements (--sink xapi_statements); --replay queues them again. Ids number the rows of one table: "
        "without --sink they are outbox entries."
    )

    def add_arguments(self, parser):
        parser.add_argument("--replay", action="store_true", help="queue the selected dead letters again")
        parser.add_argument("--sink", help="only this sink's dead letters")
        parser.add_argument("--id", type=int, nargs="+", dest="ids", help="only these entry ids")
        parser.add_argument("--limit", type=int, default=50, help="how many to list (default 50)")

    def handle(self, *args, **options):
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        name = options["sink"]
        if name and name not in all_sinks() and not OutboxEntry.objects.filter(sink=name).exists():
            raise CommandError(f"no sink or queue named {name}; sinks: {', '.join(all_sinks())}")
        if options["replay"]:
            count = outbox.replay_dead_letters(ids=options["ids"], sink_name=options["sink"])
            self.stdout.write(f"{count} dead letters queued again.")
            return
        total = 0
        for queue in outbox.queues_with_dead_letters(options["sink"]):
            dead = queue.dead_letters()
            if options["ids"]:
                dead = dead.filter(id__in=options["ids"])
            total += dead.count()
            for entry in dead[: options["limit"]]:
                self.stdout.write(f"{entry.id}\t{queue.name}\t{entry}\t{entry.last_error}")
        self.stdout.write(f"{total} dead letters.")
