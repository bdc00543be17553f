"""The stand-in CMS. Importing it creates the Celery app, as in edx-platform, so that it is the current app."""

from cms.celery import APP as CELERY_APP

__all__ = ["CELERY_APP"]
