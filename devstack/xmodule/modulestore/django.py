"""
The modulestore entry point and its signals, at edx-platform's module path.

``COURSE_PUBLISHED`` is a plain Django signal (sender: the store class; kwarg ``course_key``). It is sent
with ``send_robust``, as upstream: a failing receiver is logged and does not fail the publish.
"""

import functools
import logging

from django.dispatch import Signal

log = logging.getLogger(__name__)

COURSE_PUBLISHED = Signal()


class SignalHandler:
    """Sends the modulestore's signals on behalf of a store class."""

    course_published = COURSE_PUBLISHED

    def __init__(self, modulestore_class: type):
        self.modulestore_class = modulestore_class

    def send(self, signal_name: str, **kwargs) -> None:
        signal = getattr(self, signal_name)
        for receiver, response in signal.send_robust(sender=self.modulestore_class, **kwargs):
            if isinstance(response, Exception):
                log.error("Receiver %r of %s failed", receiver, signal_name, exc_info=response)


@functools.cache
def modulestore():
    """The process's store (created on first use, when Django's apps are ready)."""
    from xmodule.modulestore.store import DevstackModuleStore

    return DevstackModuleStore(signal_handler=SignalHandler(DevstackModuleStore))
