"""
The CMS's Celery app. A worker, from the devstack/ directory::

    DJANGO_SETTINGS_MODULE=cms.envs.devstack celery -A cms.celery worker -l info
"""

from openedx.core.lib.celery import service_app

APP = service_app("cms")
