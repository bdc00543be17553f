"""The one user the server accepts, and where a request's credentials are read from.

Separate from the handler so that the harness and the command line share the password's environment variable
without loading the HTTP server or the engine.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import authentication_failed

PASSWORD_ENVIRONMENT_VARIABLE = "DEVSTACK_CLICKHOUSE_PASSWORD"
# The server runs SQL that reads and writes this machine's files, so it refuses to start without a password unless
# told so in words nobody types by accident.
INSECURE_NO_PASSWORD_FLAG = "--insecure-no-password"


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)

    def matches(self, other: Credentials) -> bool:
        """Compare in constant time, as any password check should."""
        same_user = hmac.compare_digest(self.user.encode(), other.user.encode())
        return hmac.compare_digest(self.password.encode(), other.password.encode()) and same_user


def request_credentials(headers: Mapping[str, str], parameters: Mapping[str, str]) -> Credentials:
    """Read the credentials from wherever ClickHouse accepts them; without any, the user is ``default``."""
    authorization = headers.get("Authorization", "")
    if authorization.startswith("Basic "):
        try:
            user, _, password = base64.b64decode(authorization[len("Basic ") :], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise authentication_failed("") from None
        return Credentials(user, password)
    if "X-ClickHouse-User" in headers or "X-ClickHouse-Key" in headers:
        return Credentials(headers.get("X-ClickHouse-User", "default"), headers.get("X-ClickHouse-Key", ""))
    return Credentials(parameters.get("user", "default"), parameters.get("password", ""))
