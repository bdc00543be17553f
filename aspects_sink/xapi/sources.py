"""
Where the history import reads tracking logs from: files on disk, or objects in S3-compatible storage.

A source lists its logs in a stable order (file arguments as given, object keys sorted) and opens one as a
stream of bytes; :func:`log_lines` gunzips it on the fly when it is gzip, so no log is ever held in memory
whole. Object storage is read with boto3 (docs/decisions/0011-history-from-object-storage.rst): credentials
come from the source configuration or boto3's usual chain (environment, shared files, web identity,
container and instance roles), and no error message or log line ever shows them.
"""

from __future__ import annotations

import datetime
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

_GZIP_MAGIC = b"\x1f\x8b"
_READ_SIZE = 1024 * 1024
# Longer than any tracking event: a line this long is something else under the prefix, never held whole.
MAX_LINE_BYTES = 16 * 1024 * 1024
# A day in a log's key: tracking.log-20240102.gz, tracking.log-2024-01-02-1704153600.gz, 2024/01/02/part-1.gz
_DAY_IN_KEY = re.compile(r"(?<!\d)(20\d\d)([-/]?)(0[1-9]|1[0-2])\2(0[1-9]|[12]\d|3[01])(?!\d)")
# libcloud's LOCAL driver leaves these folders of its own out of a container's listing.
_LIBCLOUD_FOLDERS = {".lock", ".hash"}
# event-routing-backends' transform_tracking_logs names libcloud providers; these are the ones read here.
ERB_PROVIDERS = ("LOCAL", "S3", "MINIO")


class SourceError(Exception):
    """The logs cannot be listed or read: a missing bucket or directory, refused credentials, no endpoint."""


class CorruptLog(Exception):
    """One log cannot be read to its end (a corrupt or truncated gzip member); the others still can."""


@dataclass(frozen=True)
class LogObject:
    """One tracking log: ``key`` is an object's key in ``source`` (``s3://bucket``), or a file's absolute path."""

    source: str
    key: str
    size: int  # bytes as stored (compressed, for a gzip log)
    modified: datetime.datetime

    @property
    def name(self) -> str:
        """How reports name it: ``s3://bucket/key``, or the file's path."""
        return f"{self.source}/{self.key}" if self.source.startswith("s3://") else self.key

    @property
    def day(self) -> datetime.date:
        """
        The day in its name (logrotate's date extension), else in its folders (``2024/01/02/``, as log shippers
        write), else the day it was last written. Digits that name no day (``20241131``) are no date.
        """
        folders, _, name = self.key.rpartition("/")
        for part in (name, folders):
            for found in _DAY_IN_KEY.finditer(part):
                year, _, month, day = found.groups()
                try:
                    return datetime.date(int(year), int(month), int(day))
                except ValueError:
                    continue
        return self.modified.date()


class LogSource(Protocol):
    """What the import needs of a place holding logs."""

    @property
    def where(self) -> str:
        """Where the logs are looked for, as errors name it (``s3://bucket/prefix``, a directory, files)."""

    def objects(self) -> list[LogObject]:
        """Every log, in the order to import them; raises SourceError."""

    def open(self, log: LogObject) -> BinaryIO:
        """The log's bytes as stored, as a stream; raises SourceError."""


class FileSource:
    """
    Files given one by one (kept in that order), or the files of a directory tree whose paths in it start with a
    prefix, as libcloud's LOCAL driver lists a container for ``transform_tracking_logs`` (in path order).
    """

    def __init__(self, paths: list[Path], where: str = ""):
        self.paths = paths
        self.where = where or ", ".join(str(path) for path in paths)

    @classmethod
    def directory(cls, directory: Path, prefix: str = "") -> FileSource:
        if not directory.is_dir():
            raise SourceError(f"no such directory: {directory}")
        found = []
        for folder, subfolders, files in os.walk(directory):
            subfolders[:] = [name for name in subfolders if name not in _LIBCLOUD_FOLDERS]
            for name in files:
                path = Path(folder, name)
                if path.relative_to(directory).as_posix().startswith(prefix):
                    found.append(path)
        return cls(sorted(found, key=lambda path: path.relative_to(directory).as_posix()), str(directory / prefix))

    def objects(self) -> list[LogObject]:
        missing = [str(path) for path in self.paths if not path.is_file()]
        if missing:
            raise SourceError(f"no such file: {', '.join(missing)}")
        logs = []
        for path in self.paths:
            stat = path.stat()
            modified = datetime.datetime.fromtimestamp(stat.st_mtime, tz=datetime.UTC)
            logs.append(LogObject("file", str(path.resolve()), stat.st_size, modified))
        return logs

    def open(self, log: LogObject) -> BinaryIO:
        try:
            return open(log.key, "rb")
        except OSError as error:
            raise SourceError(f"{log.name}: {error.strerror}") from error


@dataclass(frozen=True)
class S3Location:
    """Bucket, prefix and how to reach them; ``None`` leaves a value to boto3's usual places."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None

    def __repr__(self) -> str:  # never show the secrets, even in a traceback
        return f"S3Location(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"


class S3Source:
    """The objects under a prefix of a bucket, in key order (listed page by page, read as streams)."""

    def __init__(self, location: S3Location):
        self.location = location
        self._client = None
        self._client_pid = 0

    @property
    def client(self):
        """A boto3 client of this process's own: a forked worker never shares its parent's connections."""
        if self._client is None or self._client_pid != os.getpid():
            import boto3  # noqa: PLC0415 - only an import from object storage needs it
            from botocore.config import Config  # noqa: PLC0415

            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.location.endpoint_url,
                region_name=self.location.region,
                aws_access_key_id=self.location.access_key,
                aws_secret_access_key=self.location.secret_key,
                aws_session_token=self.location.session_token,
                config=Config(retries={"max_attempts": 5, "mode": "standard"}),
            )
            self._client_pid = os.getpid()
        return self._client

    @property
    def url(self) -> str:
        return f"s3://{self.location.bucket}"

    @property
    def where(self) -> str:
        return f"{self.url}/{self.location.prefix}"

    def objects(self) -> list[LogObject]:
        with self._errors():
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=self.location.prefix
            )
            logs = [
                LogObject(self.url, item["Key"], item["Size"], item["LastModified"])
                for page in pages
                for item in page.get("Contents", ())
                if not item["Key"].endswith("/")
            ]
        return sorted(logs, key=lambda log: log.key)

    def open(self, log: LogObject) -> BinaryIO:
        with self._errors(log.name):
            return _ObjectStream(self.client.get_object(Bucket=self.location.bucket, Key=log.key)["Body"], log.name)

    def _errors(self, what: str = ""):
        return _S3Errors(self.location, what)


class _S3Errors:
    """boto3's errors as one line an operator can act on, naming the bucket (or object) and never a secret."""

    REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}

    def __init__(self, location: S3Location, what: str):
        self.location = location
        self.what = what or f"s3://{location.bucket}/{location.prefix}"

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None:
            return False
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError  # noqa: PLC0415

        if isinstance(error, NoCredentialsError):
            raise SourceError(
                f"{self.what}: no S3 credentials found (give key and secret in --source_config, set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with a role)"
            ) from None
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                raise SourceError(f"bucket {self.location.bucket!r} does not exist") from None
            if code == "NoSuchKey":
                raise SourceError(f"{self.what}: no such object") from None
            if code == "AccessDenied":
                raise SourceError(
                    f"{self.what}: S3 denied access ({code}): the credentials were accepted, but may not list or read "
                    "these objects (s3:ListBucket, s3:GetObject; a bucket policy, or a KMS key the role may not use)"
                ) from None
            if code in self.REFUSED:
                raise SourceError(f"{self.what}: S3 refused the credentials ({code})") from None
            raise SourceError(f"{self.what}: S3 error {code or error}") from None
        if isinstance(error, BotoCoreError):
            raise SourceError(f"{self.what}: {error}") from None
        return False


class _ObjectStream:
    """
    An object's body as it streams in. A connection that breaks or times out meanwhile is a SourceError naming
    the object, so that log is reported, its lines before the break kept, and the others go on. botocore wraps
    urllib3's timeouts and protocol errors in its own, but lets others through (a TLS record that fails to
    decrypt is urllib3's SSLError): neither the gzip reader nor the import would know any of them.
    """

    def __init__(self, body, name: str):
        self.body = body
        self.name = name

    def read(self, size: int = -1) -> bytes:
        from botocore.exceptions import BotoCoreError  # noqa: PLC0415 - only an import from object storage needs it
        from urllib3.exceptions import HTTPError  # noqa: PLC0415

        try:
            return self.body.read(size if size >= 0 else None)
        except (BotoCoreError, HTTPError, OSError) as error:
            raise SourceError(f"{self.name}: the connection broke while reading it ({error})") from None

    def close(self) -> None:
        self.body.close()


def source_from_argument(argument: str, endpoint_url: str | None = None) -> LogSource:
    """A positional argument: ``s3://bucket/prefix`` or a file's path."""
    if not argument.startswith("s3://"):
        return FileSource([Path(argument)])
    bucket, _, prefix = argument.removeprefix("s3://").partition("/")  # as written: '#' and '?' are in keys
    if not bucket:
        raise SourceError(f"{argument}: no bucket in the URL")
    return S3Source(S3Location(bucket, prefix, endpoint_url=endpoint_url))


def source_from_erb_options(provider: str, config: str) -> LogSource:
    """
    The source ``transform_tracking_logs --source_provider P --source_config JSON`` reads, so an operator's
    invocation carries over: ``container`` and ``prefix`` as there; for S3 and MINIO libcloud's ``key``,
    ``secret``, ``token``, ``region``, ``host``, ``port``, ``secure``; for LOCAL ``key`` is the base directory
    and ``container`` a directory in it.
    """
    try:
        options = json.loads(config)
        container, prefix = options.pop("container"), options.pop("prefix")
    except (ValueError, AttributeError, TypeError):  # not JSON, or JSON but no object (a list, a number...)
        raise SourceError("--source_config is not a JSON object") from None
    except KeyError:
        raise SourceError(
            "--source_config must define 'container' and 'prefix', as transform_tracking_logs asks"
        ) from None
    if provider == "LOCAL":
        return FileSource.directory(Path(options.get("key", ".")) / container, prefix)
    if provider in ("S3", "MINIO"):
        endpoint_url = None
        if options.get("host"):
            secure = options.get("secure", True)
            port = f":{options['port']}" if options.get("port") else ""
            endpoint_url = f"{'https' if secure else 'http'}://{options['host']}{port}"
        return S3Source(
            S3Location(
                container,
                prefix,
                endpoint_url=endpoint_url,
                region=options.get("region"),
                access_key=options.get("key"),
                secret_key=options.get("secret"),
                session_token=options.get("token"),
            )
        )
    raise SourceError(f"--source_provider {provider} is not supported here; use one of {', '.join(ERB_PROVIDERS)}")


class CountingReader(io.RawIOBase):
    """A stream's bytes as a raw file object, counting how many were read (progress in stored bytes)."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)

    def close(self) -> None:
        self.stream.close()
        super().close()


class OverlongLine(bytes):
    """What :func:`log_lines` yields for a line longer than ``MAX_LINE_BYTES``: its first bytes, read no further."""


def log_lines(stream: CountingReader) -> Iterator[bytes]:
    """
    The lines of a log, gunzipped when it is gzip (by its first bytes, whatever its name), every member of a
    multi-member file included; a line longer than ``MAX_LINE_BYTES`` is an :class:`OverlongLine`, the rest of
    it read past, so that memory stays bounded whatever the log holds. A corrupt or truncated gzip raises
    CorruptLog where it is found, and a plain file that cannot be read further CorruptLog alike.
    """
    buffered = io.BufferedReader(stream, _READ_SIZE)
    gzipped = buffered.peek(2)[:2] == _GZIP_MAGIC
    reader = gzip.GzipFile(fileobj=buffered) if gzipped else buffered
    try:
        while line := reader.readline(MAX_LINE_BYTES):
            if len(line) < MAX_LINE_BYTES or line.endswith(b"\n"):
                yield line
                continue
            while (rest := reader.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass
            yield OverlongLine(line[:100])
    except (OSError, EOFError, zlib.error) as error:
        raise CorruptLog(f"corrupt gzip: {error}" if gzipped else f"unreadable: {error}") from None
