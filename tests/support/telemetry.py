"""An edx-django-utils telemetry backend that keeps what it is told, for tests (``OPENEDX_TELEMETRY``)."""

from __future__ import annotations

import contextlib

from edx_django_utils.monitoring import TelemetryBackend


class RecordingBackend(TelemetryBackend):
    """Keeps every custom attribute set, in order, in the class-level ``attributes`` list."""

    attributes: list[tuple[str, object]] = []

    def set_attribute(self, key, value):
        self.attributes.append((key, value))

    def record_exception(self):
        pass

    def create_span(self, name, operation_name=None):
        return contextlib.nullcontext()

    def tag_root_span_with_error(self, exception):
        pass

    def set_local_root_span_name(self, name, group=None, priority=None):
        pass
