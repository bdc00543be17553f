"""Account signals, at edx-platform's module path."""

from django.dispatch import Signal

# Sent with kwarg ``user`` by the retirement pipeline's ``retire_misc`` step, while the account still has its
# username and email, so that code holding data about the user (analytics sinks, for one) can remove it.
USER_RETIRE_LMS_MISC = Signal()
# Sent with kwarg ``user`` by the ``retire`` step, after the profile is cleared, before the account is renamed.
USER_RETIRE_LMS_CRITICAL = Signal()
# Sent with kwargs ``email``, ``new_email`` and ``user`` by ``retire_misc``, to unsubscribe the user from mailings.
USER_RETIRE_MAILINGS = Signal()
