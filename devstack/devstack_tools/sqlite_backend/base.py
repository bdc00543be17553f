"""
Django's SQLite backend, with every transaction taking the write lock when it begins (``BEGIN IMMEDIATE``)
and the file in WAL mode.

A transaction that reads and then writes while another process writes fails at once with "database is
locked" (SQLite's read-then-write deadlock), which no timeout helps; taking the lock at BEGIN makes it wait
for ``timeout`` instead. Django 5.1 offers this as ``transaction_mode``; this works on Django 4.2 too.
"""

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    """SQLite whose transactions begin IMMEDIATE, in WAL mode (readers never wait for a writer)."""

    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    def _start_transaction_under_autocommit(self):
        self.cursor().execute("BEGIN IMMEDIATE")
