#!/usr/bin/env python
"""
Run a Django command in the stand-in LMS or CMS, the way edx-platform's manage.py does::

    python devstack/manage.py lms migrate
    python devstack/manage.py cms --settings test shell -c "..."

The first argument names the service; ``--settings NAME`` picks ``<service>.envs.NAME``, falling back to
``$EDX_PLATFORM_SETTINGS`` and then to ``devstack``.
"""

import argparse
import os
import sys
from pathlib import Path

DEVSTACK_DIR = Path(__file__).resolve().parent


def parse_service_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="manage.py", add_help=False, allow_abbrev=False)
    parser.add_argument("service", choices=["lms", "cms"])
    parser.add_argument("--settings", default=os.environ.get("EDX_PLATFORM_SETTINGS", "devstack"))
    return parser.parse_known_args(argv)


def main(argv: list[str]) -> None:
    service_args, django_args = parse_service_args(argv[1:])
    os.environ["DJANGO_SETTINGS_MODULE"] = f"{service_args.service}.envs.{service_args.settings}"
    os.environ["SERVICE_VARIANT"] = service_args.service
    sys.path.insert(0, str(DEVSTACK_DIR))

    import devstack_settings
    from django.core.management import execute_from_command_line

    devstack_settings.ensure_database_exists()
    execute_from_command_line([argv[0], *django_args])


if __name__ == "__main__":
    main(sys.argv)
