"""``./manage.py lms|cms <command>``: schema, backfill, sweep and dead letters."""
