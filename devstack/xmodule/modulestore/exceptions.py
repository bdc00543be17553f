"""Modulestore errors, at edx-platform's module path."""


class ItemNotFoundError(Exception):
    """The course (or block) asked for is not in the store."""
