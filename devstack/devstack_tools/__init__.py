"""
Devstack-only parts of the stand-in platform: what edx-platform keeps outside its relational database
(the modulestore's course structures) and tooling (``seed_devstack``).
"""
