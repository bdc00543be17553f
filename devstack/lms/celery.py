"""
The LMS's Celery app. A worker, from the devstack/ directory::

    DJANGO_SETTINGS_MODULE=lms.envs.devstack celery -A lms.celery worker -l info
"""

from openedx.core.lib.celery import service_app

APP = service_app("lms")
