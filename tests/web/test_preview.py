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


def import_record(base_url: str, campaign_id: str, record: dict[str, object]) -> None:
    """One more calling record for the campaign (the demo file has one, used up above)."""
    login, password = demo_login("supervisor-1")
    with httpx.Client(base_url=base_url, timeout=30) as http:
        token = http.post("/auth/login", json={"login": login, "password": password}).json()
        http.headers["Authorization"] = f"Bearer {token['token']}"
        answer = http.post(
            f"/supervisor/campaigns/{campaign_id}/records",
            json={"format": "jsonl", "content": json.dumps(record)},
        )
        assert answer.status_code < 400, answer.text


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
        progress = boss.get_by_test_id("wb-campaigns").locator(f"[data-campaign='{campaign_id}']")
        expect(progress).to_contain_text("Demo renewals")  # every campaign is listed
        expect(progress.get_by_test_id("wb-attempts")).to_have_text("0")

        offer = page.get_by_role("alertdialog")
        expect(offer).to_be_visible(timeout=30_000)
        customer = offer.get_by_test_id("offer-customer").inner_text()
        offer.get_by_role("button", name="Accept").click()
        record = page.get_by_test_id("record-view")
        expect(record).to_be_visible(timeout=20_000)
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


def test_a_preview_record_is_rescheduled_for_the_agent(
    page: Page, browser: Browser, base_url: str, browser_context_args: dict[str, object]
) -> None:
    boss_context = browser.new_context(**browser_context_args)  # type: ignore[arg-type]
    try:
        boss = boss_context.new_page()
        log_in(boss, base_url, "supervisor-1")
        campaign_id = start_campaign(base_url)
        import_record(
            base_url,
            campaign_id,
            {
                "external_id": "WEB-RESCHEDULE",
                "name": "Charles Babbage",
                "phones": [{"number": "+1 212 555 0177", "type": "mobile"}],
            },
        )
        pending = boss.get_by_test_id("wb-campaigns").locator(
            f"[data-campaign='{campaign_id}'] li[data-state='pending']"
        )
        log_in(page, base_url, "emma")
        go_ready(page)
        offer = page.get_by_role("alertdialog")
        expect(offer).to_be_visible(timeout=30_000)
        offer.get_by_role("button", name="Accept").click()
        record = page.get_by_test_id("record-view")
        expect(record).to_be_visible(timeout=20_000)

        record.get_by_label("Reschedule").fill("2030-01-07T10:00")
        expect(record.get_by_role("checkbox", name="for me")).to_be_checked()
        record.get_by_role("button", name="Reschedule").click()
        expect(record).to_be_hidden(timeout=15_000)
        # back with the dialer, waiting for its time in 2030 (the wallboard follows)
        expect(pending).to_have_text("pending: 1", timeout=15_000)
    finally:
        boss_context.close()
    state = page.get_by_test_id("agent-state")
    expect(state).not_to_have_attribute("data-state", "busy", timeout=15_000)
    leave(page)
