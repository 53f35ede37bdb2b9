"""A person signs up in a real browser: register → details → dashboard → create instance."""

import re

from playwright.sync_api import expect


def test_register_details_dashboard(live_server, page, tmp_path):
    page.goto(live_server + "/")
    page.get_by_role("link", name="Create your free beta account").click()
    expect(page).to_have_url(re.compile(r"/signup$"))

    page.get_by_label("Name").fill("Ada Lovelace")
    page.get_by_label("Email").fill("ada@example.com")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("at least 8 characters")
    expect(page.get_by_label("Email")).to_have_value("ada@example.com")  # nothing typed is lost

    page.get_by_label("Password").fill("analytical engine")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/signup/details$"))

    page.get_by_role("button", name="Continue to my dashboard").click()
    expect(page.get_by_role("alert")).to_contain_text("accept the terms")
    page.get_by_label("I accept the").check()
    page.get_by_role("button", name="Continue to my dashboard").click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.get_by_text("Free beta")).to_be_visible()

    page.get_by_label("Name (optional)").fill("www")
    page.get_by_role("button", name="Create my instance").click()
    expect(page.get_by_role("alert")).to_contain_text("reserved")
    page.get_by_label("Name (optional)").fill("ada")
    page.get_by_role("button", name="Create my instance").click()
    expect(page.locator("#instance-status")).to_have_text("pending")
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    blocked = [e for e in page.console_errors if "Refused" in e or "Content Security Policy" in e]
    assert blocked == []  # the pages need nothing the CSP forbids
