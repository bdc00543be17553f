"""
Devstacks for the end-to-end tests: settings that let outages heal within a test's patience, a started
devstack in a fresh state directory (and a fresh MariaDB database), and the outbox as the LMS sees it.
"""

from __future__ import annotations

import uuid

import devstack_settings
from processes import Devstack

from tests.support import scenarios
from tests.support.services import require_service

# Fast retries, a fast sweep and short publish windows, so outages heal within a test's patience.
TEST_SETTINGS = {
    "ASPECTS_ENABLE_PII": True,
    "ASPECTS_SINK_RETRY_BASE_SECONDS": 0.5,
    "ASPECTS_SINK_RETRY_MAX_SECONDS": 2,
    "ASPECTS_SINK_SWEEP_INTERVAL_SECONDS": 2,
    "ASPECTS_SINK_FLUSH_INTERVAL_SECONDS": 0.5,
    # A course is dumped at most once per interval: a publishing storm within one interval makes one or two dumps.
    "ASPECTS_SINK_COURSE_DUMP_INTERVAL_SECONDS": 30,
    "ASPECTS_SINK_MAX_ATTEMPTS": 3,
}


def make_devstack(tmp_path_factory, name: str, *, database: str = "sqlite", **kwargs) -> Devstack:
    """A started devstack in a fresh state directory (and a fresh MariaDB database when asked)."""
    mysql_database = None
    if database == "mysql":
        require_service("MariaDB", "127.0.0.1", 3306)
        mysql_database = f"aspects_e2e_{name}_{uuid.uuid4().hex[:8]}"
    settings = {**TEST_SETTINGS, **kwargs.pop("settings", {})}
    devstack = Devstack(
        tmp_path_factory.mktemp(name), settings=settings, database=database, mysql_database=mysql_database, **kwargs
    )
    devstack.start()
    return devstack


def drop_mysql_database(devstack: Devstack) -> None:
    """Remove the MariaDB database a devstack created for one test module."""
    if devstack.mysql_database:
        devstack_settings.drop_database(devstack.mysql_database)


def outbox_counts(devstack: Devstack) -> dict:
    """Pending and dead outbox entries, as the LMS sees them."""
    return devstack.run_function("lms", scenarios.outbox_counts)


def wait_until_drained(devstack: Devstack, timeout: float = 90) -> None:
    """Wait until the outbox holds nothing pending (dead letters may stay)."""
    devstack.wait_for(lambda: outbox_counts(devstack)["pending"] == 0, timeout=timeout, interval=1, what="empty outbox")
