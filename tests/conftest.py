"""
Shared test configuration: the services this machine provides to the tests, and the rows a site's
migrations create.

On CI (``CI`` set) a missing service fails the test that needs it; on a developer's machine the test
is skipped, saying what to start (see :mod:`tests.support.services`).
"""

import importlib

import pytest
from django.apps import apps

from tests.support.services import require, service_available

# The one data migration of the stand-in platform: the external id types ERB asks for by name.
_external_id_types = importlib.import_module(
    "openedx.core.djangoapps.external_user_ids.migrations.0002_create_external_id_types"
)


@pytest.fixture
def mariadb():
    """MariaDB on 127.0.0.1:3306 (root, no password), as this machine runs it."""
    require(service_available("127.0.0.1", 3306), "MariaDB is not running on 127.0.0.1:3306")


@pytest.fixture(autouse=True)
def _rows_of_data_migrations(request):
    """
    Every test that uses the database finds the rows a site's migrations made.

    A transactional test ends by emptying every table (Django's flush), those rows included. pytest-django runs
    such tests after the others, but pytest-xdist hands each worker whole files in any order, so a test could
    follow one of them on the same database.
    """
    if request.node.get_closest_marker("django_db") is None and not {"db", "transactional_db"} & set(
        request.fixturenames
    ):
        return
    request.getfixturevalue("db")
    _external_id_types.create_types(apps, None)
