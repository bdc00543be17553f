"""Fixtures that build real objects through the stand-in platform's own APIs."""

import pytest
from common.djangoapps.student.helpers import create_user
from xmodule.modulestore.course_builder import create_course


@pytest.fixture
def learner(db):
    return create_user("ada", "ada@example.com", name="Ada Lovelace", country="GB")


@pytest.fixture
def course_key(db):
    return create_course("DemoX", "Analytics101", "2025", "Analytics 101", blocks=40)


@pytest.fixture
def record_signals():
    """Connect a recorder to the given signals; returns the list of (signal name, kwargs with sender) it fills."""
    connected = []

    def record(**signals):
        calls = []
        for name, signal in signals.items():

            def receiver(name=name, **kwargs):
                calls.append((name, kwargs))

            signal.connect(receiver, weak=False, dispatch_uid=f"test-recorder-{name}")
            connected.append((signal, name))
        return calls

    yield record
    for signal, name in connected:
        signal.disconnect(dispatch_uid=f"test-recorder-{name}")
