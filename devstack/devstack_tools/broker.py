"""
The devstack's embedded broker: kombu's filesystem transport, with messages written atomically.

kombu's own transport creates the message file and then writes it, so a worker polling the folder
can pick up an empty file and die on it ("Unrecoverable error: JSONDecodeError"). Here a message is
written under a name the consumer ignores and renamed into place, which the filesystem makes atomic.
"""

import os
import uuid
from time import monotonic

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

SCHEME = "devstackfs"


class Channel(filesystem.Channel):
    """A filesystem channel whose messages appear whole or not at all."""

    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.partial"  # not "<queue>.msg": the consumer skips it
        with open(partial, "wb") as message:
            message.write(str_to_bytes(dumps(payload)))
        os.replace(partial, final)


class Transport(filesystem.Transport):
    """kombu's filesystem transport with :class:`Channel`."""

    Channel = Channel


def register() -> str:
    """Make ``devstackfs://`` broker URLs resolve to this transport; return the URL."""
    TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"
    return f"{SCHEME}://"
