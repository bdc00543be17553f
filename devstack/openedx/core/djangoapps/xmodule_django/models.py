"""
Model fields holding opaque keys, like edx-platform's module of the same path.

The database column is the key's string; Python code sees a ``CourseKey``. Lookups accept either.
"""

from django.db import models
from opaque_keys.edx.keys import CourseKey


class CourseKeyField(models.CharField):
    """A course key stored as its string form (``course-v1:org+course+run``)."""

    description = "A CourseKey stored as a string"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 255)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value, expression, connection):
        return self.to_python(value)

    def to_python(self, value):
        if value is None or isinstance(value, CourseKey):
            return value
        if value == "":
            return None
        return CourseKey.from_string(value)

    def get_prep_value(self, value):
        # Not CharField's, which would turn the string back into a key through to_python().
        return None if value is None else str(value)
