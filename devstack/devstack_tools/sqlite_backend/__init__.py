"""SQLite for a devstack whose LMS, CMS and workers write to one file at the same time."""
