"""
What the stand-in LMS and CMS settings share, so ``lms/envs`` and ``cms/envs`` only say what differs.

Everything a process decides from its environment lives here: where the state directory is, which database
and which Celery broker to use, and the ``ENV_TOKENS`` an operator would give edx-platform through
``LMS_CFG`` / ``CMS_CFG``. LMS, CMS and Celery workers started with the same environment therefore share one
database and one broker, as the services of a real Open edX installation do.

Environment variables read here:

``DEVSTACK_STATE_DIR``
    Directory for the SQLite database and the embedded broker; default ``<repo>/.devstack``.
``DEVSTACK_DB``
    ``mysql`` selects MariaDB/MySQL (``DEVSTACK_MYSQL_HOST``, default 127.0.0.1; ``DEVSTACK_MYSQL_DB``,
    default ``aspects_devstack``; user root without password). Anything else: SQLite.
``DEVSTACK_CELERY_QUEUE``
    The Celery queue tasks are sent to and workers consume (default ``celery``).
``DEVSTACK_BROKER_URL``
    A Celery broker URL (e.g. ``redis://127.0.0.1:6379/0``). Unset: kombu's filesystem transport under
    ``<state>/broker``, which needs no server.
``LMS_CFG`` / ``CMS_CFG``
    A JSON (``.json``) or YAML file whose mapping becomes ``ENV_TOKENS``; the devstack settings also copy its
    keys into the settings module as edx-platform's production settings do (see ``unmerged_tokens``).
``ASPECTS_SINK_CLICKHOUSE_URL`` (and ``_USERNAME``, ``_PASSWORD``, ``_DATABASE``)
    The ClickHouse server every process writes to; see :func:`clickhouse_tokens_from_env`.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

# The Django apps of the stand-in platform, in the order edx-platform relies on: the course_overviews receiver
# of ``course_published`` must be connected before PluginsConfig connects the plugins' receivers, so that
# plugins see a fresh CourseOverview. Plugin apps (aspects_sink, event_routing_backends) are appended by each
# service from its entry points and are never listed here.
PLATFORM_APPS = (
    "django.contrib.auth",
    "django.contrib.contenttypes",
    # What the Django admin needs; edx-platform installs them all and serves the admin (ENABLE_DJANGO_ADMIN_SITE).
    "django.contrib.messages",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "django.contrib.admin",
    "waffle",
    "config_models",  # django-config-models: ConfigurationModel rows, its populate_model command (Tutor uses it)
    "celery_utils",
    "eventtracking.django.apps.EventTrackingConfig",
    "common.djangoapps.student",
    "openedx.core.djangoapps.content.course_overviews.apps.CourseOverviewsConfig",
    "openedx.core.djangoapps.external_user_ids",
    "openedx.core.djangoapps.user_api",
    "lms.djangoapps.ccx",
    # Content tags: openedx-learning's tagging app, the real package edx-platform installs (not a stand-in).
    "openedx_tagging.core.tagging.apps.TaggingConfig",
    "devstack_tools",
    "openedx.core.djangoapps.plugins.apps.PluginsConfig",
)


def platform_apps() -> list[str]:
    """A fresh INSTALLED_APPS list that a service may extend with its plugin apps."""
    return list(PLATFORM_APPS)


def state_dir(*, isolated: bool = False) -> Path:
    """
    The directory holding this devstack's database file and broker folders, created if missing.

    ``isolated`` (test settings) picks a new temporary directory when ``DEVSTACK_STATE_DIR`` is unset, so a
    test run never shares a broker with a running devstack or with another test run. The choice is exported
    to the environment so that processes the tests start (workers, ``manage.py``) join the same state.
    """
    configured = os.environ.get("DEVSTACK_STATE_DIR")
    if configured:
        path = Path(configured)
    elif isolated:
        path = Path(tempfile.mkdtemp(prefix="devstack-test-state-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        os.environ["DEVSTACK_STATE_DIR"] = str(path)
    else:
        path = REPO_ROOT / ".devstack"
    path.mkdir(parents=True, exist_ok=True)
    return path


def uses_mysql() -> bool:
    return os.environ.get("DEVSTACK_DB", "").lower() == "mysql"


def mysql_connection_params() -> dict[str, Any]:
    """Where the MariaDB/MySQL server is; shared by Django's settings and :func:`ensure_database_exists`."""
    return {
        "host": os.environ.get("DEVSTACK_MYSQL_HOST", "127.0.0.1"),
        "port": 3306,
        "user": "root",
        "password": "",
        "database": os.environ.get("DEVSTACK_MYSQL_DB", "aspects_devstack"),
    }


def databases(state: Path, *, test_database_suffix: str = "") -> dict[str, Any]:
    """
    DATABASES for the devstack: one database for LMS and CMS, as in Open edX.

    ``test_database_suffix`` keeps concurrent test runs on one MariaDB server from dropping each other's
    test database.
    """
    if not uses_mysql():
        # One file written by LMS, CMS and workers at once: see devstack_tools.sqlite_backend.
        return {
            "default": {
                "ENGINE": "devstack_tools.sqlite_backend",
                "NAME": str(state / "db.sqlite3"),
                "OPTIONS": {"timeout": 30},
                # Django's in-memory test database, named so that pytest-xdist leaves it alone: it takes this
                # backend for another server and would give each worker a file named after the path above.
                "TEST": {"NAME": ":memory:"},
            }
        }

    import pymysql  # only needed, and only installed as MySQLdb, when MySQL is chosen

    pymysql.install_as_MySQLdb()
    params = mysql_connection_params()
    test = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    if test_database_suffix:
        test["NAME"] = f"test_{params['database']}_{test_database_suffix}"
    return {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": params["database"],
            "HOST": params["host"],
            "PORT": params["port"],
            "USER": params["user"],
            "PASSWORD": params["password"],
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": test,
        }
    }


def ensure_database_exists() -> None:
    """Create the MySQL database if it is missing, so ``manage.py lms migrate`` works on an empty server."""
    if not uses_mysql():
        return
    name = mysql_connection_params()["database"]
    _run_on_server(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")


def drop_database(name: str) -> None:
    """Drop a MySQL database the tests or benchmarks created for one run."""
    _run_on_server(f"DROP DATABASE IF EXISTS `{name}`")


def _run_on_server(statement: str) -> None:
    """Run one statement on the MySQL server itself, outside any database (which may not exist yet)."""
    import pymysql

    params = mysql_connection_params()
    del params["database"]
    connection = pymysql.connect(**params)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def celery_broker(state: Path) -> dict[str, Any]:
    """
    CELERY_BROKER_URL and its transport options.

    Without ``DEVSTACK_BROKER_URL`` the broker is a set of folders: the producer writes each message as a file
    and a worker (another process) picks it up, so ``celery -A lms.celery worker`` is a real worker without
    any server to run.
    """
    url = os.environ.get("DEVSTACK_BROKER_URL")
    if url:
        return {"CELERY_BROKER_URL": url, "CELERY_BROKER_TRANSPORT_OPTIONS": {}}
    broker = state / "broker"
    queue, control = broker / "queue", broker / "control"
    for folder in (queue, control):
        folder.mkdir(parents=True, exist_ok=True)
    from devstack_tools import broker

    return {
        "CELERY_BROKER_URL": broker.register(),
        "CELERY_BROKER_TRANSPORT_OPTIONS": {
            # One folder for both directions: every process both publishes and consumes.
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "control_folder": str(control),
            "polling_interval": 0.2,  # seconds between looks at the folder: tasks start promptly
        },
    }


def state_settings(state: Path, *, test_database_suffix: str = "") -> dict[str, Any]:
    """The settings that depend on the state directory."""
    return {
        "DEVSTACK_STATE_DIR": str(state),
        "DATABASES": databases(state, test_database_suffix=test_database_suffix),
        # One cache for every process, as memcached or Redis is for a real site (plugins coordinate through it).
        "CACHES": {
            "default": {
                "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": str(state / "cache"),
            }
        },
        **celery_broker(state),
    }


def test_settings() -> dict[str, Any]:
    """
    What the test settings change: an isolated state directory, on MySQL a test database per process, and
    a fast password hasher (as edx-platform's test settings use).
    """
    return {
        **state_settings(state_dir(isolated=True), test_database_suffix=str(os.getpid())),
        "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
    }


def shared_settings(service: str) -> dict[str, Any]:
    """Settings identical in both services but for the service name."""
    return {
        "SERVICE_VARIANT": service,
        "ROOT_URLCONF": f"{service}.urls",
        "SECRET_KEY": "devstack-only-secret-key-not-for-production",
        "DEBUG": False,
        "ALLOWED_HOSTS": ["*"],
        "TIME_ZONE": "UTC",
        "USE_TZ": True,
        # edx-platform keeps 32-bit primary keys; the plugin's own models choose theirs.
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
        # The part of edx-platform's middleware the admin relies on: sessions, CSRF, the logged-in user, messages.
        "MIDDLEWARE": [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        "STATIC_URL": "/static/",
        # edx-platform's default: the LMS serves the Django admin at /admin/.
        "FEATURES": {"ENABLE_DJANGO_ADMIN_SITE": True},
        "LMS_ROOT_URL": "http://localhost:18000",
        "CMS_ROOT_URL": "http://localhost:18010",
        # event-routing-backends adds its ``event_transformer`` backend to whatever is configured here.
        "EVENT_TRACKING_ENABLED": True,
        "EVENT_TRACKING_BACKENDS": {},
        "EVENT_TRACKING_PROCESSORS": [],
        # How retirement renames accounts (edx-platform's defaults); the last salt is the current one.
        "RETIRED_USERNAME_FMT": "retired__user_{}",
        "RETIRED_EMAIL_FMT": "retired__user_{}@retired.invalid",
        "RETIRED_USER_SALTS": ["abc", "123"],
        "CELERY_TASK_IGNORE_RESULT": True,
        # Devstacks sharing one Redis (parallel test runs) each get a queue of their own.
        "CELERY_TASK_DEFAULT_QUEUE": os.environ.get("DEVSTACK_CELERY_QUEUE", "celery"),
        "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP": True,
        **state_settings(state_dir()),
    }


def env_tokens(config_env_var: str) -> dict[str, Any]:
    """
    ENV_TOKENS as edx-platform's production settings build them: the mapping in the file named by
    ``LMS_CFG`` / ``CMS_CFG``, else empty; plus the ClickHouse connection from the environment.
    """
    path = os.environ.get(config_env_var)
    tokens: dict[str, Any] = _read_config_file(Path(path)) if path else {}
    clickhouse = clickhouse_tokens_from_env()
    if clickhouse:
        configured = tokens.get("EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG") or {}
        tokens["EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"] = {**configured, **clickhouse}
    return tokens


# The YAML keys edx-platform's production settings do NOT copy into the settings module, because they are merged
# into the defaults instead (each production.py handles them further down). Both lists are in the order of
# edx-platform master's ``lms/envs/production.py`` and ``cms/envs/production.py``, where they are the ``if key not
# in [...]`` filter of the ``vars().update({...})`` that follows ``_YAML_TOKENS = yaml.safe_load(f)``. Older
# releases name the same idea ``KEYS_WITH_MERGED_VALUES`` (and also list ``MKTG_URL_OVERRIDES``).
LMS_KEYS_WITH_MERGED_VALUES = (
    "FEATURES",
    "TRACKING_BACKENDS",
    "EVENT_TRACKING_BACKENDS",
    "JWT_AUTH",
    "CELERY_QUEUES",
    "MKTG_URL_LINK_MAP",
    "REST_FRAMEWORK",
    "EVENT_BUS_PRODUCER_CONFIG",
)
CMS_KEYS_WITH_MERGED_VALUES = (
    "FEATURES",
    "TRACKING_BACKENDS",
    "EVENT_TRACKING_BACKENDS",
    "JWT_AUTH",
    "CELERY_QUEUES",
    "REST_FRAMEWORK",
    "EVENT_BUS_PRODUCER_CONFIG",
    "DEFAULT_FILE_STORAGE",
    "STATICFILES_STORAGE",
)


def unmerged_tokens(tokens: dict[str, Any], merged_keys: tuple[str, ...]) -> dict[str, Any]:
    """
    The part of ``tokens`` that production settings copy into the settings module as they stand.

    Values are not copied, as in edx-platform master: a dict in ENV_TOKENS and the setting of the same name are
    one object. A plugin that later merges its defaults with ``ENV_TOKENS[name]`` therefore finds the setting
    already replaced by the operator's (possibly partial) value.
    """
    return {key: value for key, value in tokens.items() if key not in merged_keys}


def merge_event_tracking_backends(defaults: dict[str, Any], tokens: dict[str, Any]) -> dict[str, Any]:
    """
    ``EVENT_TRACKING_BACKENDS`` after production settings merged the operator's value into the defaults.

    edx-platform nests the operator's backends inside its ``tracking_logs`` routing backend
    (``EVENT_TRACKING_BACKENDS['tracking_logs']['OPTIONS']['backends'].update(...)``). The stand-in's defaults
    have no ``tracking_logs`` backend; there the operator's backends are added at the top level.
    """
    configured = tokens.get("EVENT_TRACKING_BACKENDS") or {}
    merged = dict(defaults)
    tracking_logs = merged.get("tracking_logs")
    if tracking_logs is not None:
        tracking_logs["OPTIONS"]["backends"].update(configured)
    else:
        merged.update(configured)
    return merged


def _read_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text) or {}
    import yaml  # edx-platform's configuration files are YAML

    return yaml.safe_load(text) or {}


def clickhouse_tokens_from_env() -> dict[str, str]:
    """
    The ClickHouse connection given by ``ASPECTS_SINK_CLICKHOUSE_URL`` and its companions, or ``{}``.

    Processes started separately (LMS, CMS, workers, management commands) thereby write to the same server.
    """
    if not os.environ.get("ASPECTS_SINK_CLICKHOUSE_URL"):
        return {}
    names = {"url": "URL", "username": "USERNAME", "password": "PASSWORD", "database": "DATABASE"}
    return {
        key: os.environ[f"ASPECTS_SINK_CLICKHOUSE_{suffix}"]
        for key, suffix in names.items()
        if f"ASPECTS_SINK_CLICKHOUSE_{suffix}" in os.environ
    }


def tutor_patch() -> str:
    """
    The lines Tutor appends to a service's settings after the platform's production settings (its own, and its
    plugins' ``openedx-common-settings`` patches), from the file ``DEVSTACK_TUTOR_PATCH`` names; none without it.
    """
    path = os.environ.get("DEVSTACK_TUTOR_PATCH")
    return Path(path).read_text(encoding="utf-8") if path else ""
