"""
Shared test configuration: the services this machine provides to the tests.

On CI (``CI`` set) a missing service fails the test that needs it; on a developer's machine the test
is skipped, saying what to start (see :mod:`tests.support.services`).
"""

import pytest

from tests.support.services import require, service_available


@pytest.fixture
def mariadb():
    """MariaDB on 127.0.0.1:3306 (root, no password), as this machine runs it."""
    require(service_available("127.0.0.1", 3306), "MariaDB is not running on 127.0.0.1:3306")
