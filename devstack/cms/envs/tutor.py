"""
CMS settings as Tutor writes them (``cms/envs/tutor/production.py``): edx-platform's production settings
first (here the devstack's, which follow them), then Tutor's own lines and its plugins' ``openedx-common-settings``
patches, appended as Python text. So a value a Tutor plugin sets there lands after every plugin's production
settings have run. ``DEVSTACK_TUTOR_PATCH`` names a file of such lines.
"""

import os
from pathlib import Path

from cms.envs.devstack import *  # noqa: F403 -- Tutor's settings start from the platform's production ones

if os.environ.get("DEVSTACK_TUTOR_PATCH"):
    exec(Path(os.environ["DEVSTACK_TUTOR_PATCH"]).read_text(encoding="utf-8"))
