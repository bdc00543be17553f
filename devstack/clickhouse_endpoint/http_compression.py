"""HTTP compression of request and response bodies, which clickhouse-connect uses by default.

Kept apart from the handler because it is the one part that depends on optional compression libraries (lz4, zstd,
brotli), and so that the harness, which only starts and stops the server, does not load them.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Callable, Mapping
from typing import NamedTuple

import lz4.frame

from .errors import ClickHouseError

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd  # what clickhouse-connect itself uses for zstd before Python 3.14

try:
    import brotli
except ImportError:  # optional, as it is for clickhouse-connect
    brotli = None


class Codec(NamedTuple):
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


def _decompress_lz4_frames(data: bytes) -> bytes:
    """Decompress a body made of LZ4 frames: clickhouse-connect compresses each insert block as its own frame."""
    parts = []
    while data:
        decompressor = lz4.frame.LZ4FrameDecompressor()
        parts.append(decompressor.decompress(data))
        if not decompressor.eof:
            raise ValueError("truncated LZ4 frame")
        data = decompressor.unused_data
    return b"".join(parts)


# Keyed by Content-Encoding token. zstd's decompress, like gzip's, reads concatenated frames by itself.
HTTP_CODECS: dict[str, Codec] = {
    "lz4": Codec(lz4.frame.compress, _decompress_lz4_frames),
    "zstd": Codec(zstd.compress, zstd.decompress),
    "gzip": Codec(gzip.compress, gzip.decompress),
    "deflate": Codec(zlib.compress, zlib.decompress),
}
if brotli is not None:
    HTTP_CODECS["br"] = Codec(brotli.compress, brotli.decompress)


def decode_request_body(body: bytes, content_encoding: str) -> bytes:
    """Undo the request's HTTP compression."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    codec = HTTP_CODECS.get(encoding)
    if codec is None:
        raise ClickHouseError.of(36, "BAD_ARGUMENTS", f"Unknown HTTP compression method '{encoding}'.")
    try:
        return codec.decompress(body)
    except Exception as error:
        raise ClickHouseError.of(
            271, "CANNOT_DECOMPRESS", f"Cannot decompress {encoding} request body: {error}."
        ) from None


def response_encoding(parameters: Mapping[str, str], accept_encoding: str) -> str | None:
    """Pick the encoding for a result from those the client accepts, in its order of preference (lz4 first).

    ClickHouse compresses only with ``enable_http_compression=1``. chDB's ``system.settings`` reports that setting as
    1 already, so clients such as clickhouse-connect do not send it: compression is on unless a request turns it off.
    """
    if not is_enabled(parameters.get("enable_http_compression", "1")):
        return None
    accepted = (token.split(";")[0].strip().lower() for token in accept_encoding.split(","))
    return next((encoding for encoding in accepted if encoding in HTTP_CODECS), None)


def is_enabled(flag: str) -> bool:
    return flag.strip().lower() not in ("", "0", "false")


def reject_native_compression(parameters: Mapping[str, str]) -> None:
    """Refuse ClickHouse's own block compression loudly: ignoring it would hand the client undecodable bytes."""
    for flag in ("compress", "decompress"):
        if is_enabled(parameters.get(flag, "")):
            raise ClickHouseError.of(
                48,
                "NOT_IMPLEMENTED",
                f"{flag}=1 (ClickHouse block compression) is not supported by the development server; "
                "use HTTP compression (Content-Encoding / Accept-Encoding), as clickhouse-connect does by default.",
            )
