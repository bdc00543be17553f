"""aspects-sink: Open edX platform data and xAPI statements into ClickHouse."""

__version__ = "0.1.0"
