"""A newcomer's first instance runs the real OpenClaw gateway and answers: `clawdet run` (web,
worker, sandbox cloud, real Pulumi engine, one real gateway) in its own process, Chromium for
the pages, httpx and the official `openai` SDK as the gateway's clients.

sign up -> create -> progress -> ready (the real gateway answered a first chat through the LLM
proxy) -> "Open my assistant" -> chats through the gateway -> usage on the dashboard -> the
Control UI -> destroy. Screenshots of every step go to the test's tmp_path.
"""

import json
import os
import re
import subprocess
import sys

import httpx
import openai
import pytest
from playwright.sync_api import expect

from clawdet.instances.lifecycle import STEPS
from sandbox import openclaw as openclaw_install
from tests.fixtures.browser import REPO, free_port, wait_until_up
from tests.fixtures.provisioning import project_copy, require_toolchain

pytestmark = [pytest.mark.engine, pytest.mark.browser]


@pytest.fixture
def control_plane(tmp_path):
    require_toolchain()
    if openclaw_install.find() is None:
        pytest.fail(
            "OpenClaw is not installed for the sandbox: run `make openclaw` (make test does it first)."
        )
    port = free_port()
    env = {
        **os.environ,
        "CLAWDET_DATA_DIR": str(tmp_path / "data"),
        "PORT": str(port),
        "CLAWDET_PROJECT_DIR": str(project_copy(tmp_path / "project")),
        "PULUMI_CONFIG_PASSPHRASE": "browser-test",
        "SANDBOX_REAL_GATEWAYS": "1",
        "CLAWDET_SANDBOX": "true",  # as `make run` sets it
    }
    for key in (
        "DATABASE_URL",
        "HCLOUD_TOKEN",
        "PUBLIC_URL",
        "LLM_PROXY_URL",
        "LLM_PRIMARY_KEY",
        "SMTP_HOST",
    ):
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


def sandbox_inventory(tmp_path) -> dict:
    description = json.loads((tmp_path / "data" / "sandbox" / "sandbox.json").read_text())
    return httpx.get(description["control_url"] + "/inventory", timeout=5).json()


def test_a_newcomer_gets_a_real_assistant_that_answers(control_plane, page, tmp_path):
    shot = lambda name: page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    page.goto(control_plane + "/signup")
    page.get_by_label("Name").fill("Grace Hopper")
    page.get_by_label("Email").fill("grace@example.com")
    page.get_by_label("Password").fill("compiler-one")
    page.get_by_role("button", name="Create account").click()
    page.get_by_label("I accept the").check()
    page.get_by_role("button", name="Continue to my dashboard").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    shot("1-signed-up")

    page.get_by_label("Name (optional)").fill("grace")
    page.get_by_role("button", name="Create my instance").click()
    expect(page.locator("#instance-progress")).to_be_visible()
    expect(page.locator("#instance-steps li")).to_have_count(len(STEPS))
    shot("2-progress")
    expect(page.locator("#instance-steps li[data-step='checking']")).to_have_class(
        re.compile("current|done"), timeout=240_000
    )
    shot("3-first-chat")
    expect(page.locator("#instance-status")).to_have_text("ready", timeout=240_000)
    expect(page.locator("#instance-url")).to_have_text("https://grace.clawdet.test")
    [server] = sandbox_inventory(tmp_path)["servers"]
    assert server["gateway"]["kind"] == "openclaw", server["gateway"]  # the real gateway, not the stand-in
    shot("4-ready")

    page.reload()  # the page as it is rendered for a ready instance
    page.get_by_text("Open my assistant").click()
    token = page.locator("#gateway-token").inner_text()
    api = page.locator("#assistant-api").inner_text()
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert api == f"http://{server['ipv4']}:18789/v1"
    expect(page.locator("#control-ui-link")).to_have_attribute(
        "href", f"http://{server['ipv4']}:18789/#token={token}"
    )
    shot("5-open-my-assistant")

    # The gateway answers with what the sandbox's LLM upstream said, through the platform's proxy.
    answer = httpx.post(
        f"{api}/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "openclaw", "messages": [{"role": "user", "content": "hello from grace"}]},
        timeout=180,
    )
    assert answer.status_code == 200, answer.text
    assert re.search(
        r"Sandbox reply [0-9a-f]{8} to: .*hello from grace", answer.json()["choices"][0]["message"]["content"]
    )

    client = openai.OpenAI(base_url=api, api_key=token, timeout=180, max_retries=0)
    reply = client.chat.completions.create(
        model="openclaw", messages=[{"role": "user", "content": "what does the openai sdk hear"}]
    )
    assert "what does the openai sdk hear" in reply.choices[0].message.content
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="openclaw", messages=[{"role": "user", "content": "stream me an answer"}], stream=True
        )
        if chunk.choices
    )
    assert "stream me an answer" in streamed
    assert [m.id for m in client.models.list()][:1] == ["openclaw"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=api, api_key="not-the-token", max_retries=0).models.list()

    # Every chat was metered for this instance and shows on the owner's dashboard.
    page.reload()
    expect(page.locator("#llm-usage table tbody tr")).to_have_count(1)
    requests = int(page.locator("#llm-usage tbody td").nth(1).inner_text())
    assert requests >= 4  # the first chat at ready time, then httpx, the SDK, the SDK's stream
    assert int(page.locator("#usage-tokens").inner_text().replace(",", "")) > 0
    shot("6-usage")

    # How far the owner gets in the Control UI (in the sandbox the browser reaches the gateway
    # from this machine's loopback, so OpenClaw's device pairing approves it by itself).
    ui = page.context.new_page()
    ui.goto(f"http://{server['ipv4']}:18789/#token={token}")
    expect(ui).to_have_title(re.compile("OpenClaw", re.I), timeout=30_000)
    box = ui.get_by_placeholder(re.compile("Message", re.I))
    expect(box).to_be_visible(timeout=30_000)
    ui.screenshot(path=str(tmp_path / "7-control-ui.png"), full_page=True)
    reply = ui.get_by_text(re.compile(r"Sandbox reply [0-9a-f]{8} to:.*hello from the control ui")).first
    for wait in (30_000, 30_000, 120_000):  # a message typed while the UI still loads its session is dropped
        box.fill("hello from the control ui")
        box.press("Enter")
        try:
            expect(reply).to_be_visible(timeout=wait)
            break
        except AssertionError:
            if wait == 120_000:
                raise
    ui.screenshot(path=str(tmp_path / "8-control-ui-chat.png"), full_page=True)
    ui.close()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Destroy").click()
    expect(page.get_by_role("button", name="Create my instance")).to_be_visible(timeout=240_000)
    assert sandbox_inventory(tmp_path)["servers"] == []
