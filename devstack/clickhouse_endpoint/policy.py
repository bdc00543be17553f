"""What the server refuses to run, although chDB would: it serves a developer's machine, not a sandbox.

chDB runs with the rights of the user who started it, so SQL that names a file, a URL or another server reads or
writes that machine and its network. None of the plugin's own SQL needs that, so such SQL is refused before it
reaches the engine. The insert path's own ``FROM INFILE`` is built after these checks, on a temporary file of its own.

The checks read the statement with the endpoint's lexer, so a word inside a string literal or a comment never
counts. They stop the plain ways of reaching files and hosts; they are no substitute for not exposing the port.
"""

from __future__ import annotations

import itertools

from .errors import ClickHouseError
from .sql import RESULT_STATEMENTS, sql_tokens, statement_keywords

# What ClickHouse lets a GET request run (it sets readonly=2 for them): reading, and changing settings.
READ_ONLY_STATEMENTS = RESULT_STATEMENTS | {b"SET", b"USE"}

# Table functions, table engines, database engines and dictionary sources (ClickHouse spells them alike, in
# any case) that read or write local files, run programs, read the server process's memory, or reach other hosts.
# ``input()`` stays allowed: it reads the request's own data.
IO_FUNCTIONS = frozenset(
    {
        # this machine
        b"file",
        b"filecluster",
        b"filesystem",
        b"filelog",
        b"sqlite",
        b"executable",
        b"executablepool",
        b"python",  # chDB: reads Python objects of the serving process
        b"arrowstream",  # chDB: likewise
        # other hosts
        b"url",
        b"urlcluster",
        b"http",
        b"s3",
        b"s3cluster",
        b"s3queue",
        b"gcs",
        b"oss",
        b"cosn",
        b"azureblobstorage",
        b"azureblobstoragecluster",
        b"azurequeue",
        b"hdfs",
        b"hdfscluster",
        b"remote",
        b"remotesecure",
        b"mysql",
        b"postgresql",
        b"materializedpostgresql",
        b"mongodb",
        b"redis",
        b"jdbc",
        b"odbc",
        b"kafka",
        b"rabbitmq",
        b"nats",
        b"ytsaurus",
        b"bigquery",
    }
)
# Data lake functions and engines come in many variants (local, S3, Azure, HDFS, clustered), all reading files.
IO_FUNCTION_FAMILIES = (b"iceberg", b"deltalake", b"hudi", b"paimon")


def check_read_only(sql: bytes) -> None:
    """Refuse anything but reading over GET, as ClickHouse does: a link or a crawler must not change data."""
    for keyword in statement_keywords(sql):
        if keyword not in READ_ONLY_STATEMENTS:
            # ClickHouse's HTTP handler gives READONLY no status of its own, hence its default, 500.
            raise ClickHouseError.of(
                164,
                "READONLY",
                "Cannot execute query in readonly mode. For queries over HTTP, method GET implies readonly. "
                "You should use method POST for modifying queries",
            )


def check_no_outside_io(sql: bytes) -> None:
    """Refuse SQL that names a file, a program or another host, with the error ClickHouse would give for each."""
    for token, following in itertools.pairwise(sql_tokens(sql)):
        name = token.name.lower()
        if following.text == b"(" and (name in IO_FUNCTIONS or name.startswith(IO_FUNCTION_FAMILIES)):
            # ClickHouse refuses a user without the grant on a source (READ ON FILE, URL, S3, REMOTE, ...) with
            # ACCESS_DENIED; FUNCTION_NOT_ALLOWED (446) is for functions a setting switches off, which is not the case.
            raise ClickHouseError.of(
                497,
                "ACCESS_DENIED",
                f"Not enough privileges: the development server grants no access to {token.name.decode()}(), "
                "which reads or writes outside its own database (local files, programs or other hosts).",
            )
        if token.kind == following.kind == "word":
            words = (token.text.upper(), following.text.upper())
            if words == (b"INTO", b"OUTFILE"):
                # What a ClickHouse server answers: INTO OUTFILE is for clients writing their own files.
                raise ClickHouseError.of(358, "INTO_OUTFILE_NOT_ALLOWED", "INTO OUTFILE is not allowed")
            if words == (b"FROM", b"INFILE"):
                # Likewise, word for word: FROM INFILE is for clients reading their own files.
                raise ClickHouseError.of(
                    78, "UNKNOWN_TYPE_OF_QUERY", "Query has infile and was send directly to server"
                )
