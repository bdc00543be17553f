"""``aspects_sink_xapi_lrs`` keeps exactly one RouterConfiguration per LRS, however often a deployment runs it."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from event_routing_backends.models import RouterConfiguration

RALPH = ("--route_url", "http://ralph:8100/xAPI", "--username", "ralph")


def configure(*args: str) -> str:
    output = io.StringIO()
    call_command("aspects_sink_xapi_lrs", *args, stdout=output)
    return output.getvalue()


@pytest.mark.django_db
def test_running_it_twice_leaves_one_row():
    assert "created" in configure(*RALPH, "--password", "secret")
    assert "unchanged" in configure(*RALPH, "--password", "secret")

    router = RouterConfiguration.objects.get()
    assert (router.backend_name, router.route_url, router.auth_scheme) == ("xAPI", "http://ralph:8100/xAPI/", "Basic")
    assert (router.username, router.password, router.enabled) == ("ralph", "secret", True)


@pytest.mark.django_db
def test_new_credentials_update_the_row_in_place():
    configure(*RALPH, "--password", "secret")

    assert "updated" in configure(*RALPH, "--password", "rotated", "--disable")

    router = RouterConfiguration.objects.get()
    assert (router.password, router.enabled) == ("rotated", False)
    assert RouterConfiguration.get_enabled_routers("xAPI") is None
