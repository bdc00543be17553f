"""Per-user grants, as a ClickHouse server enforces them: which kinds of statement a user may run on which database.

A real deployment gives the LMS's ClickHouse user only some rights (Tutor: ``INSERT, SELECT, DELETE`` on
``event_sink.*`` and on the xAPI database). Tests run the plugin as such a user to prove that everything it does at
run time needs no more. The server's own user (``--user``) has every right; the users of a grants file have only
what it lists::

    {"users": {"ch_lms": {"password": "...", "grants": {"event_sink": ["INSERT", "SELECT", "DELETE"],
                                                       "xapi": ["INSERT", "SELECT", "DELETE"]}}}}

Each statement is classified with the endpoint's lexer into the privilege ClickHouse checks for it (``SELECT``,
``INSERT``, ``ALTER DELETE`` for ``ALTER TABLE ... DELETE`` and ``DELETE FROM``, ``ALTER UPDATE``, ``CREATE TABLE``,
``OPTIMIZE``, ...) and the databases it touches (``db.table``, or the request's database). ``DELETE`` and ``UPDATE``
are ClickHouse's aliases of ``ALTER DELETE`` and ``ALTER UPDATE``; ``ALL`` grants everything on a database. A
refused statement gets ClickHouse's ACCESS_DENIED (497) naming the missing grant. With an audit file, every check is
appended to it as a JSON line (user, privilege, database, allowed, the statement's start), so a test can read what
a run needed, statement by statement. Reading ``system`` tables needs no grant, as on a default ClickHouse server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from .auth import Credentials
from .errors import ClickHouseError
from .sql import Token, sql_tokens

ALIASES = {"DELETE": "ALTER DELETE", "UPDATE": "ALTER UPDATE"}
READ_STATEMENTS = frozenset({"SELECT", "WITH", "EXPLAIN"})
# Statements about what exists, which ClickHouse lets any user with a right on the database run.
METADATA_STATEMENTS = frozenset({"SHOW", "DESCRIBE", "DESC", "EXISTS", "CHECK"})
FREE_STATEMENTS = frozenset({"SET", "USE"})
ALWAYS_READABLE_DATABASES = frozenset({"system", "information_schema", "INFORMATION_SCHEMA"})


@dataclass(frozen=True)
class Need:
    """One right a statement needs: a privilege on a database."""

    privilege: str
    database: str


@dataclass
class User:
    """A user of the grants file: credentials and privileges per database."""

    credentials: Credentials
    grants: Mapping[str, frozenset[str]]

    def allows(self, need: Need) -> bool:
        granted = self.grants.get(need.database, frozenset())
        if "ALL" in granted or need.privilege in granted:
            return True
        return need.privilege == "METADATA" and bool(granted)


@dataclass
class GrantTable:
    """The users of a grants file, and where checks are recorded."""

    users: dict[str, User]
    audit_path: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, path: str, audit_path: str | None = None) -> GrantTable:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
        users = {
            name: User(
                Credentials(name, entry.get("password", "")),
                {
                    database: frozenset(ALIASES.get(p.upper(), p.upper()) for p in privileges)
                    for database, privileges in entry.get("grants", {}).items()
                },
            )
            for name, entry in document.get("users", {}).items()
        }
        return cls(users, audit_path)

    def user_for(self, credentials: Credentials) -> User | None:
        user = self.users.get(credentials.user)
        return user if user is not None and user.credentials.matches(credentials) else None

    def check(self, user: User, sql: bytes, database: str) -> None:
        """Raise ACCESS_DENIED for the first right the statement needs that the user lacks; record every check."""
        for need in needs(sql, database):
            allowed = user.allows(need)
            self._audit(user, need, allowed, sql)
            if not allowed:
                raise ClickHouseError.of(
                    497,
                    "ACCESS_DENIED",
                    f"{user.credentials.user}: Not enough privileges. To execute this query, it's necessary to have "
                    f"the grant {need.privilege} ON {need.database}.*",
                )

    def _audit(self, user: User, need: Need, allowed: bool, sql: bytes) -> None:
        if not self.audit_path:
            return
        line = {
            "user": user.credentials.user,
            "privilege": need.privilege,
            "database": need.database,
            "allowed": allowed,
            "statement": " ".join(sql[:300].decode(errors="replace").split()),
        }
        with self._lock, open(self.audit_path, "a", encoding="utf-8") as audit:
            audit.write(json.dumps(line) + "\n")


def needs(sql: bytes, database: str) -> Iterator[Need]:
    """The rights each statement of a request needs, in order."""
    for statement in _statements(sql):
        yield from _statement_needs(statement, database)


def _statements(sql: bytes) -> Iterator[list[Token]]:
    statement: list[Token] = []
    for token in sql_tokens(sql):
        if token.kind == "other" and token.text == b";":
            if statement:
                yield statement
            statement = []
        else:
            statement.append(token)
    if statement:
        yield statement


def _words(statement: list[Token]) -> list[str]:
    return [token.text.decode().upper() for token in statement if token.kind == "word"]


def _table_after(statement: list[Token], index: int, database: str) -> tuple[str, int]:
    """The database of the table named at ``statement[index]`` (``db.table`` or ``table``), and the index after it."""
    names = [statement[index].name.decode()]
    position = index + 1
    if position + 1 < len(statement) and statement[position].text == b"." and statement[position + 1].name:
        names.append(statement[position + 1].name.decode())
        position += 2
    return (names[0] if len(names) == 2 else database), position


def _read_tables(statement: list[Token], database: str) -> Iterator[Need]:
    """SELECT on each table read (after FROM or JOIN); table functions and subqueries need no grant here."""
    for index, token in enumerate(statement[:-1]):
        if token.kind != "word" or token.text.upper() not in (b"FROM", b"JOIN"):
            continue
        following = statement[index + 1]
        if not following.name or following.text.upper() in (b"SELECT", b"INFILE"):
            continue
        table_database, after = _table_after(statement, index + 1, database)
        if after < len(statement) and statement[after].text == b"(":
            continue  # a table function such as numbers(10) or input()
        if table_database not in ALWAYS_READABLE_DATABASES:
            yield Need("SELECT", table_database)


def _statement_needs(statement: list[Token], database: str) -> Iterator[Need]:
    words = _words(statement)
    if not words:
        return
    first = words[0]
    if first in FREE_STATEMENTS:
        return
    if first in READ_STATEMENTS:
        yield from _read_tables(statement, database)
    elif first in METADATA_STATEMENTS:
        table_index = next((i for i, t in enumerate(statement[1:], 1) if t.name and t.text.upper() != b"TABLE"), None)
        if table_index is not None:
            yield Need("METADATA", _table_after(statement, table_index, database)[0])
    elif first == "INSERT":
        into = next(i for i, token in enumerate(statement) if token.text.upper() == b"INTO")
        following = statement[into + 1]
        if following.text.upper() == b"TABLE":
            into += 1
        yield Need("INSERT", _table_after(statement, into + 1, database)[0])
        yield from _read_tables(statement, database)
    elif first == "ALTER":
        table_database, after = _table_after(statement, 2, database)
        rest = _words(statement[after:])
        if rest[:2] == ["ON", "CLUSTER"]:
            rest = rest[3:]
        action = rest[0] if rest else ""
        yield Need({"DELETE": "ALTER DELETE", "UPDATE": "ALTER UPDATE"}.get(action, "ALTER"), table_database)
    elif first == "DELETE":
        from_index = next(i for i, token in enumerate(statement) if token.text.upper() == b"FROM")
        yield Need("ALTER DELETE", _table_after(statement, from_index + 1, database)[0])
    elif first in ("CREATE", "DROP", "TRUNCATE", "OPTIMIZE", "RENAME", "EXCHANGE"):
        yield from _ddl_needs(first, statement, words, database)
    else:
        yield Need(first, database)  # SYSTEM, GRANT, KILL...: nothing the plugin runs


def _ddl_needs(first: str, statement: list[Token], words: list[str], database: str) -> Iterator[Need]:
    kinds = ("DATABASE", "TABLE", "VIEW", "DICTIONARY", "FUNCTION", "USER", "ROLE")
    kind = next((word for word in words[1:4] if word in kinds), "TABLE")
    kind_index = next((i for i, token in enumerate(statement) if token.text.decode().upper() == kind), 0)
    name_index = kind_index + 1
    while name_index < len(statement) and statement[name_index].text.upper() in (b"IF", b"NOT", b"EXISTS"):
        name_index += 1
    if kind == "DATABASE":
        target = statement[name_index].name.decode() if name_index < len(statement) else database
    else:
        target = _table_after(statement, name_index, database)[0] if name_index < len(statement) else database
    privilege = first if first in ("TRUNCATE", "OPTIMIZE") else f"{first} {kind}"
    yield Need(privilege, target)
