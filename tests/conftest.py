"""
Shared test configuration: the services this machine provides to the tests.

On CI (``CI`` set) a missing service fails the test that needs it; on a developer's machine the test
is skipped, saying what to start.
"""

import os
import socket

import pytest


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(available: bool, what: str) -> None:
    """Fail on CI, skip elsewhere, when something a test needs is missing."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} (required on CI)")
    pytest.skip(f"{what}; install or start it to run this test")


@pytest.fixture
def mariadb():
    """MariaDB on 127.0.0.1:3306 (root, no password), as this machine runs it."""
    require(service_available("127.0.0.1", 3306), "MariaDB is not running on 127.0.0.1:3306")
