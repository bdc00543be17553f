"""
The one Celery app of the stand-in platform, as edx-platform keeps it in this module.

It is configured from Django settings (``CELERY_*``) and discovers the tasks of the installed apps. LMS and
CMS processes create it at start-up (``lms/__init__.py``, ``cms/__init__.py``), which makes it the current
app: ``shared_task`` tasks of plugins and libraries are then sent through the devstack's broker instead of
Celery's default one. A CMS process imports the ``lms`` package too and gets the same app.
"""

import functools
import os

from celery import Celery


def service_app(service: str) -> Celery:
    """
    The shared app, for ``lms.celery`` and ``cms.celery``.

    A worker started without DJANGO_SETTINGS_MODULE gets the service's devstack settings. This has to happen
    before the app is created, because Celery hooks into Django only if that variable is set by then.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{service}.envs.devstack")
    return _create_app()


@functools.cache
def _create_app() -> Celery:
    app = Celery("proj")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.autodiscover_tasks()
    return app
