"""The devstack_tools app; it also tunes SQLite for several processes sharing one database file."""

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class DevstackToolsConfig(AppConfig):
    name = "devstack_tools"
    verbose_name = "Devstack tools"

    def ready(self):
        connection_created.connect(use_write_ahead_log, dispatch_uid="devstack_tools.use_write_ahead_log")


def use_write_ahead_log(sender, connection, **kwargs):
    """
    Let readers (LMS, workers) go on while another process writes, and make bulk seeding commit quickly.

    WAL with ``synchronous=NORMAL`` is durable against process crashes, which is all a devstack needs.
    """
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
