"""LMS settings as Tutor writes them (``lms/envs/tutor/production.py``): production's, then Tutor's lines."""

import devstack_settings

from lms.envs.devstack import *  # noqa: F403 -- Tutor's settings start from the platform's production ones

exec(devstack_settings.tutor_patch())  # appended as Python text, after every plugin's settings
