"""Prove that no ClickHouse table holds personal data of a retired user; with --repair, remove what is found."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from aspects_sink import delivery, mutations, retirement
from aspects_sink.management.options import add_connection_arguments, transport_from_options
from aspects_sink.models import RetiredUser
from aspects_sink.sinks.registry import get_sink
from aspects_sink.transport import TransportError


class Command(BaseCommand):
    """``./manage.py lms aspects_sink_retirement_check [--repair] [--batch_size N]``."""

    help = (
        "For every user recorded as retired (RetiredUser), check every ClickHouse table: no row in the tables "
        "whose rows retirement deletes (user_profile, external_id, EVENT_SINK_CLICKHOUSE_PII_MODELS), no "
        "non-empty personal column elsewhere (course_enrollment.username, site sinks), no xAPI statement of "
        "their external ids naming the actor by email, hash or name. Users are checked in batches, one query "
        "per table per batch. Exits 1 listing the tables and ids at fault. --repair runs the retirement "
        "mutations again for the users found (and deletes the statements found), waits for them to finish in "
        "system.mutations, and checks those users again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--repair", action="store_true", help="remove what is found, then check again")
        parser.add_argument("--batch_size", type=int, default=1000, help="retired users per query (default 1000)")
        add_connection_arguments(parser)

    def handle(self, *args, **options):
        transport = transport_from_options(options)
        retired = list(RetiredUser.objects.order_by("user_id").values_list("user_id", flat=True))
        size = max(1, options["batch_size"])
        findings: list[retirement.Finding] = []
        for start in range(0, len(retired), size):
            batch = retired[start : start + size]
            try:
                found = retirement.find_personal_data(transport, batch)
                if found and options["repair"]:
                    self._repair(transport, batch, found)
                    found = retirement.find_personal_data(transport, batch)
            except (TransportError, mutations.MutationNotDone) as error:
                raise CommandError(f"retired users {batch[0]}–{batch[-1]}: {error}") from error
            findings += found
            self.stdout.write(f"checked {min(start + size, len(retired))}/{len(retired)} retired users")
        if findings:
            listing = "\n".join(f"  {finding}" for finding in findings)
            raise CommandError(f"personal data of retired users is still in ClickHouse:\n{listing}")
        self.stdout.write(f"No personal data of the {len(retired)} retired users in any table.")

    def _repair(self, transport, batch: list[int], found: list[retirement.Finding]) -> None:
        users = sorted({int(user_id) for finding in found for user_id in finding.ids if user_id.isdigit()})
        if users:
            delivery.write(get_sink(retirement.RETIREMENT_SINK), users, transport)
        actors = sorted(set(retirement.xapi_actor_ids(batch)) & {i for finding in found for i in finding.ids})
        if actors:
            statement = retirement.xapi_repair(actors)
            mutations.run(
                transport,
                statement.sql,
                statement.parameters,
                statement.settings,
                statement.mutates or "",
                mutations_log=statement.mutations_log,
            )
        self.stdout.write(f"repaired: {len(users)} users, {len(actors)} xAPI actors")
