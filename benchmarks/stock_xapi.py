"""
The xAPI pipeline Aspects ships without aspects-sink, for ``benchmarks/xapi.py`` to run side by side with ours:
event-routing-backends as its own settings configure it (one Celery task per event, ``AsyncEventsRouter``
batching statements in a Redis list) with Aspects' batching settings, posting to a Ralph LRS that writes
them into the same ClickHouse table.

Ralph runs from a virtualenv of its own under ``.benchmarks/`` (made on first use), as one uvicorn process
on the devstack's ClickHouse endpoint. The devstack's LMS gets the route to it through
``aspects_sink_xapi_lrs``, the command operators use for the same purpose.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import urllib.request

import redis
from backfill import virtualenv
from clickhouse_endpoint import free_port
from processes import CLICKHOUSE_PASSWORD, CLICKHOUSE_USER, Devstack

# Ralph 5.1 imports requests (OIDC auth) without declaring it in these extras.
RALPH_REQUIREMENTS = ["ralph-malph[backend-clickhouse,cli,lrs]==5.1.0", "requests"]
RALPH_USER = "erb"
# tutor-contrib-aspects' batching of event-routing-backends (Ralph route): 100 events or 5 seconds.
STOCK_SETTINGS = {
    "ASPECTS_SINK_XAPI_ENABLED": False,
    "EVENT_ROUTING_BACKEND_BATCHING_ENABLED": True,
    "EVENT_ROUTING_BACKEND_BATCH_SIZE": 100,
    "EVENT_ROUTING_BACKEND_BATCH_INTERVAL": 5,
}
# event-routing-backends' batch of events for its xapi backend, in the default cache's Redis.
ERB_BATCH_KEY = "events_router_queue_xapi"


def redis_cache(url: str) -> dict:
    """``CACHES`` on Redis through django-redis, which event-routing-backends' batching requires."""
    return {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}}


class Ralph:
    """A Ralph LRS (ClickHouse backend) on the devstack's endpoint, with one Basic-auth account."""

    def __init__(self, devstack: Devstack):
        self.devstack = devstack
        self.python = str(virtualenv("ralph", RALPH_REQUIREMENTS, devstack=False))
        self.app_dir = devstack.state_dir / "ralph"
        self.password = secrets.token_hex(8)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/xAPI/"

    def env(self) -> dict[str, str]:
        lrs = "RALPH_BACKENDS__LRS__CLICKHOUSE__"
        return {
            **os.environ,
            "RALPH_APP_DIR": str(self.app_dir),
            "RALPH_AUTH_FILE": str(self.app_dir / "auth.json"),
            "RALPH_RUNSERVER_BACKEND": "clickhouse",
            f"{lrs}HOST": "127.0.0.1",
            f"{lrs}PORT": str(self.devstack.clickhouse.port),
            f"{lrs}USERNAME": CLICKHOUSE_USER,
            f"{lrs}PASSWORD": CLICKHOUSE_PASSWORD,
        }

    def start(self) -> Ralph:
        self.app_dir.mkdir(parents=True, exist_ok=True)
        ralph = [self.python, "-m", "ralph"]
        account = ["auth", "-u", RALPH_USER, "-p", self.password, "-s", "all", "-M", "mailto:erb@example.com", "-w"]
        subprocess.run([*ralph, *account], env=self.env(), check=True, capture_output=True)
        log = open(self.devstack.state_dir / "ralph.log", "ab")  # noqa: SIM115 - Ralph writes to it until stopped
        self.process = subprocess.Popen(
            [self.python, "-m", "uvicorn", "ralph.api:app", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.devstack.wait_for(self._healthy, timeout=60, what="Ralph to answer")
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/__heartbeat__", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


class StockPipeline:
    """Switches the devstack to the stock pipeline: aspects-sink's route off, ERB batching to Ralph."""

    name = "event-routing-backends → Ralph (stock)"

    def __init__(self, devstack: Devstack, cache_url: str):
        self.devstack = devstack
        self.cache_url = cache_url
        self.ralph = Ralph(devstack)

    def __enter__(self) -> StockPipeline:
        self.ralph.start()
        self.devstack.update_settings(**STOCK_SETTINGS)
        self.devstack.manage(
            "lms", "aspects_sink_xapi_lrs", "--route_url", self.ralph.url,
            "--username", RALPH_USER, "--password", self.ralph.password,
        )  # fmt: skip
        return self

    def stranded(self) -> int:
        """Events in ERB's batch, which it flushes only when another event arrives."""
        return redis.Redis.from_url(self.cache_url).llen(ERB_BATCH_KEY)

    def __exit__(self, *exc_info) -> None:
        self.ralph.stop()
