"""
``./manage.py lms aspects_sink_xapi_lrs --route_url URL --username U --password P``: also send xAPI to an LRS.

ClickHouse gets statements without any of this. Sites that also want a Learning Record Store that stores
statements somewhere else need one ``RouterConfiguration`` row of event-routing-backends; this command
creates it or brings it up to date, idempotently, so it can run at every deployment: a second run with the
same values changes nothing and never adds a row. While aspects-sink routes statements to ClickHouse, the
route is used only once its URL is listed in ``ASPECTS_SINK_XAPI_LRS_ROUTE_URLS`` (an LRS writing into the
same raw table, as Aspects' Ralph does, would store every statement twice); the command says so.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from edx_django_utils.cache import TieredCache, get_cache_key
from event_routing_backends.models import RouterConfiguration

from aspects_sink import toggles
from aspects_sink.conf import aspects_settings


class Command(BaseCommand):
    """``./manage.py lms aspects_sink_xapi_lrs --route_url URL --username U --password P [--disable]``."""

    help = (
        "Create or update event-routing-backends' xAPI RouterConfiguration for an LRS with Basic auth "
        "(Ralph: --route_url http://ralph:8100/xAPI/). Idempotent: running it again leaves one row."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--route_url", required=True, help="the LRS's xAPI base URL; statements go to <url>statements"
        )
        parser.add_argument("--username", required=True)
        parser.add_argument("--password", required=True, help="stored encrypted by event-routing-backends")
        parser.add_argument("--disable", action="store_true", help="keep the row but stop routing to this LRS")

    def handle(self, *args, **options):
        route_url = options["route_url"] if options["route_url"].endswith("/") else options["route_url"] + "/"
        wanted = {
            "auth_scheme": RouterConfiguration.AUTH_BASIC,
            "username": options["username"],
            "password": options["password"],
            "enabled": not options["disable"],
        }
        rows = RouterConfiguration.objects.filter(backend_name=RouterConfiguration.XAPI_BACKEND, route_url=route_url)
        current = rows.order_by("-change_date", "-id").first()
        if current is None:
            RouterConfiguration(backend_name=RouterConfiguration.XAPI_BACKEND, route_url=route_url, **wanted).save()
            outcome = "created"
        elif all(getattr(current, name) == value for name, value in wanted.items()):
            outcome = "unchanged"
        else:
            # ConfigurationModel.save() always adds a row (a history of changes); one row per LRS is what
            # operators expect of a deployment step, so the current row is updated in place.
            rows.filter(pk=current.pk).update(**wanted)
            outcome = "updated"
        if outcome != "unchanged":
            self._forget_cached_routers()
        self.stdout.write(
            f"xAPI LRS route to {route_url} {outcome} ({'disabled' if options['disable'] else 'enabled'})."
        )
        if toggles.xapi_enabled() and route_url not in aspects_settings.ASPECTS_SINK_XAPI_LRS_ROUTE_URLS:
            self.stdout.write(
                "It receives no statement while aspects-sink sends them to ClickHouse: add it to "
                "ASPECTS_SINK_XAPI_LRS_ROUTE_URLS if this LRS stores statements elsewhere than ClickHouse's "
                "raw xAPI table."
            )

    @staticmethod
    def _forget_cached_routers() -> None:
        """ERB caches enabled routers per backend name (its settings say ``xapi``; the model says ``xAPI``)."""
        for backend_name in {"xapi", RouterConfiguration.XAPI_BACKEND}:
            TieredCache.delete_all_tiers(get_cache_key(namespace="event_routing_backends", resource=backend_name))
