"""Account signals, at edx-platform's module path."""

from django.dispatch import Signal

# Sent with kwarg ``user`` during LMS account retirement, before the account is scrubbed, so that code
# holding data about the user (analytics sinks, for one) can remove it.
USER_RETIRE_LMS_MISC = Signal()
