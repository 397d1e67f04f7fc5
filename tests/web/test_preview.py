"""A preview record worked in the browser while the wallboard follows the campaign."""

from __future__ import annotations

import json

import httpx
import pytest
from browser import go_ready, leave, log_in, shot
from playwright.sync_api import Browser, Page, expect
from scenario import CAMPAIGN_FILE, demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def start_campaign(base_url: str) -> str:
    """The demo campaign is loaded inactive; a supervisor switches it on (through the API)."""
    login, password = demo_login("supervisor-1")
    campaign = json.loads(CAMPAIGN_FILE.read_text())["campaigns"][0]
    with httpx.Client(base_url=base_url, timeout=30) as http:
        token = http.post("/auth/login", json={"login": login, "password": password}).json()
        http.headers["Authorization"] = f"Bearer {token['token']}"
        answer = http.put(
            f"/supervisor/campaigns/{campaign['campaign_id']}",
            json={"campaign": {**campaign["campaign"], "active": True}},
        )
        assert answer.status_code < 400, answer.text
    return str(campaign["campaign_id"])


def test_a_preview_record_is_skipped_offered_again_called_and_completed(
    page: Page, browser: Browser, base_url: str, browser_context_args: dict[str, object]
) -> None:
    boss_context = browser.new_context(**browser_context_args)  # type: ignore[arg-type]
    try:
        boss = boss_context.new_page()
        log_in(boss, base_url, "supervisor-1")
        log_in(page, base_url, "emma")
        go_ready(page)
        campaign_id = start_campaign(base_url)
        boss.get_by_role("textbox", name="Campaign").fill(campaign_id)
        boss.get_by_role("button", name="+").click()
        progress = boss.locator(f"[data-campaign='{campaign_id}']")
        expect(progress.get_by_test_id("wb-attempts")).to_have_text("0")

        offer = page.get_by_role("alertdialog")
        expect(offer).to_be_visible(timeout=30_000)
        customer = offer.get_by_test_id("offer-customer").inner_text()
        offer.get_by_role("button", name="Accept").click()
        record = page.get_by_test_id("record-view")
        expect(record).to_be_visible()
        record.get_by_role("textbox", name="Reason").fill("not now")
        record.get_by_role("button", name="Skip").click()
        expect(record).to_be_hidden()

        again = page.get_by_role("alertdialog")
        expect(again).to_be_visible(timeout=30_000)
        expect(again.get_by_test_id("offer-customer")).to_have_text(customer)
        again.get_by_role("button", name="Accept").click()
        expect(record).to_be_visible()
        recommended = record.locator("li.recommended")
        expect(recommended).to_contain_text("recommended")
        recommended.get_by_role("button").click()
        expect(record.get_by_test_id("call-progress")).to_be_visible(timeout=15_000)
        shot(page, "preview-record")
        record.get_by_label("Disposition").select_option("Renewed")
        record.get_by_role("button", name="Complete").click()
        expect(record).to_be_hidden(timeout=15_000)

        expect(progress.get_by_test_id("wb-attempts")).to_have_text("1", timeout=15_000)
        shot(boss, "wallboard-campaign")
    finally:
        boss_context.close()
    state = page.get_by_test_id("agent-state")
    expect(state).not_to_have_attribute("data-state", "busy", timeout=15_000)
    leave(page)
