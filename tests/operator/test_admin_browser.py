"""
The admin pages in a real browser (Debian's chromium, driven by selenium through chromium-driver) against the LMS
served over HTTP: a staff member logs in, opens the outbox, the dead letters, the dead xAPI statements and the
status page, and replays a dead letter. Screenshots are kept in the test's output directory.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.support import scenarios
from tests.support.services import require

pytestmark = pytest.mark.platform_processes  # on one interpreter only: tox.ini

USERNAME, PASSWORD = "ops", "ops-password-1"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


@pytest.fixture
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    require(chromium is not None and driver is not None, "chromium and chromium-driver are not installed")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    browser.implicitly_wait(10)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def devstack(operator_devstack):
    """The folder's devstack, left without dead letters whatever the test did."""
    yield operator_devstack
    operator_devstack.run_function("lms", scenarios.delete_dead_letters)


def tick(browser, checkbox) -> None:
    checkbox.click()
    WebDriverWait(browser, 10).until(lambda _: checkbox.is_selected())


def submit_action(browser, action: str) -> list[str]:
    """Run an admin action on the rows ticked, and return the messages the next page shows."""
    Select(browser.find_element(By.NAME, "action")).select_by_value(action)
    WebDriverWait(browser, 10).until(lambda _: browser.find_element(By.NAME, "action").get_attribute("value") == action)
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    WebDriverWait(browser, 20).until(lambda _: browser.find_elements(By.CSS_SELECTOR, "ul.messagelist li"))
    return [message.text for message in browser.find_elements(By.CSS_SELECTOR, "ul.messagelist li")]


@pytest.mark.slow
def test_staff_reads_the_admin_pages_and_replays_a_dead_letter(devstack, browser, tmp_path):
    url = devstack.lms_url
    devstack.run_function("lms", scenarios.make_superuser, username=USERNAME, password=PASSWORD)
    parked = devstack.run_function(
        "lms",
        scenarios.park_dead_letters,
        sink="user_profile",
        object_ids=[900001, 900002],
        reason="ClickHouseRejected: bad row",
    )

    def shot(name: str) -> None:
        browser.save_screenshot(str(tmp_path / f"{name}.png"))

    browser.get(f"{url}/admin/")
    browser.find_element(By.NAME, "username").send_keys(USERNAME)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    assert "Site administration" in browser.page_source
    shot("index")

    browser.get(f"{url}/admin/aspects_sink/outboxentry/")
    assert "900001" in browser.page_source and "900002" in browser.page_source
    assert "By reason" in browser.page_source or "reason" in browser.page_source
    shot("outbox-entries")

    browser.get(f"{url}/admin/aspects_sink/deadxapistatement/")
    assert "00000000-0000-0000-0000-00000000dead" in browser.page_source
    shot("dead-xapi-statements")

    browser.get(f"{url}/admin/aspects_sink/sinkhealth/")
    assert "Aspects sink status" in browser.page_source
    row = browser.find_element(By.CSS_SELECTOR, "#aspects-sink-queues tr.queue-user_profile")
    assert row.find_element(By.CSS_SELECTOR, "td.dead").text.startswith("2")
    assert "up, version" in browser.find_element(By.ID, "aspects-sink-clickhouse").text
    shot("status")

    browser.get(f"{url}/admin/aspects_sink/deadletter/?reason=ClickHouseRejected")
    assert "900001" in browser.page_source
    shot("dead-letters")
    tick(browser, browser.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{parked[0]}']"))
    assert submit_action(browser, "replay") == ["1 dead letters queued again."]
    shot("replayed")

    states = devstack.run_function("lms", scenarios.dead_letter_states, ids=parked)
    assert states[str(parked[1])] == "dead" and states[str(parked[0])] in ("pending", "gone")
    # The worker drains it (no such profile: nothing to send), and it leaves the dead letters for good.
    devstack.wait_for(
        lambda: devstack.run_function("lms", scenarios.dead_letter_states, ids=parked)[str(parked[0])] == "gone",
        timeout=60,
        what="the replayed entry drained",
    )
    browser.get(f"{url}/admin/aspects_sink/deadletter/")
    assert "900002" in browser.page_source and "900001" not in browser.page_source

    # Discarding leaves the devstack as the test found it: no dead letters anywhere.
    for page in ("deadletter", "deadxapistatement"):
        browser.get(f"{url}/admin/aspects_sink/{page}/")
        tick(browser, browser.find_element(By.ID, "action-toggle"))
        assert submit_action(browser, "discard_dead") == ["1 dead letters discarded."]
    shot("discarded")
    assert devstack.run_function("lms", scenarios.outbox_counts)["dead"] == 0
    assert sorted(path.name for path in tmp_path.glob("*.png")) == [
        "dead-letters.png", "dead-xapi-statements.png", "discarded.png", "index.png", "outbox-entries.png",
        "replayed.png", "status.png",
    ]  # fmt: skip
