"""
``./manage.py lms seed_devstack``: fill the devstack in bulk, e.g. to measure a backfill::

    python devstack/manage.py lms seed_devstack --courses 20 --blocks-per-course 500 \\
        --users 100000 --external-ids --enrollments 300000 --seed 1
"""

from django.core.management.base import BaseCommand, CommandError

from devstack_tools.seeding import Seeder


class Command(BaseCommand):
    help = "Add courses, users with profiles, xAPI external ids and enrollments in bulk (no signals fire)."

    def add_arguments(self, parser):
        parser.add_argument("--users", type=int, default=0, help="users (with profiles) to add")
        parser.add_argument("--courses", type=int, default=0, help="courses to publish")
        parser.add_argument("--blocks-per-course", type=int, default=100, help="blocks in each new course")
        parser.add_argument(
            "--enrollments", type=int, default=0, help="enrollments to add over all users x all courses"
        )
        parser.add_argument("--external-ids", action="store_true", help="give every user an xAPI external id")
        parser.add_argument("--batch-size", type=int, default=5000, help="rows per insert transaction")
        parser.add_argument("--seed", type=int, default=0, help="same seed, same data")

    def handle(self, *args, **options):
        seeder = Seeder(seed=options["seed"], batch_size=options["batch_size"], progress=self.stdout.write)
        if options["courses"]:
            seeder.courses(options["courses"], options["blocks_per_course"])
        if options["users"]:
            seeder.users(options["users"])
        if options["external_ids"]:
            self.stdout.write(f"external ids created: {seeder.external_ids():,}")
        if options["enrollments"]:
            try:
                created = seeder.enrollments(options["enrollments"])
            except ValueError as error:
                raise CommandError(str(error)) from error
            self.stdout.write(f"enrollments created: {created:,}")
