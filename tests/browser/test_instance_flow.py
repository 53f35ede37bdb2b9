"""A person creates an instance and watches it come up, then destroys it: `clawdet run` (web,
worker, sandbox cloud, real Pulumi engine) in its own process and Chromium."""

import os
import re
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.fixtures.browser import REPO, free_port, wait_until_up
from tests.fixtures.provisioning import project_copy, require_toolchain

pytestmark = [pytest.mark.engine, pytest.mark.browser]


@pytest.fixture
def control_plane(tmp_path):
    require_toolchain()
    port = free_port()
    env = {
        **os.environ,
        "CLAWDET_DATA_DIR": str(tmp_path / "data"),
        "PORT": str(port),
        "CLAWDET_PROJECT_DIR": str(project_copy(tmp_path / "project")),
        "PULUMI_CONFIG_PASSPHRASE": "browser-test",
    }
    for key in ("DATABASE_URL", "HCLOUD_TOKEN"):
        env.pop(key, None)
    log = open(tmp_path / "run.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "clawdet.cli", "run", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/api/auth/csrf", process, timeout=60)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=120)
        log.close()


def test_create_watch_progress_ready_destroy(control_plane, page, tmp_path):
    page.goto(control_plane + "/signup")
    page.get_by_label("Name").fill("Grace Hopper")
    page.get_by_label("Email").fill("grace@example.com")
    page.get_by_label("Password").fill("compiler-one")
    page.get_by_role("button", name="Create account").click()
    page.get_by_label("I accept the").check()
    page.get_by_role("button", name="Continue to my dashboard").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))

    page.get_by_label("Name (optional)").fill("grace")
    page.get_by_role("button", name="Create my instance").click()
    progress = page.locator("#instance-progress")
    expect(progress).to_be_visible()
    expect(page.locator("#instance-steps li")).to_have_count(6)
    page.screenshot(path=str(tmp_path / "progress.png"), full_page=True)
    expect(page.locator("#instance-status")).to_have_text("ready", timeout=240_000)
    expect(page.locator("#instance-url")).to_have_text("https://grace.clawdet.test")
    page.get_by_text("Show my gateway token").click()
    expect(page.locator("#gateway-token")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    page.screenshot(path=str(tmp_path / "ready.png"), full_page=True)

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Destroy").click()
    expect(page.get_by_role("button", name="Create my instance")).to_be_visible(timeout=240_000)
