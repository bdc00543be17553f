"""The stand-in LMS. Importing it creates the Celery app, as in edx-platform, so that it is the current app."""

from lms.celery import APP as CELERY_APP

__all__ = ["CELERY_APP"]
