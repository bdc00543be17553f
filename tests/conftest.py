"""Shared test configuration: tests marked ``mariadb`` run only when the suite runs on MariaDB."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("DEVSTACK_DB", "").lower() == "mysql":
        return
    skip = pytest.mark.skip(reason="needs MariaDB: run with DEVSTACK_DB=mysql")
    for item in items:
        if "mariadb" in item.keywords:
            item.add_marker(skip)
