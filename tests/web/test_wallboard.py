"""The supervisor's wallboard in a real browser, beside an agent's desktop."""

from __future__ import annotations

import time

import pytest
from browser import go_ready, leave, log_in, shot
from playwright.sync_api import Browser, Page, expect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_a_supervisor_forces_an_agent_not_ready_and_the_agent_sees_it_within_a_second(
    page: Page, browser: Browser, base_url: str, browser_context_args: dict[str, object]
) -> None:
    log_in(page, base_url, "bruno")
    go_ready(page)

    boss_context = browser.new_context(**browser_context_args)  # type: ignore[arg-type]
    try:
        boss = boss_context.new_page()
        log_in(boss, base_url, "supervisor-1")
        expect(boss).to_have_url(f"{base_url}/#/wallboard")
        row = boss.locator("tr[data-agent='bruno']")
        expect(row.get_by_test_id("wb-state")).to_have_text("Ready")
        expect(boss.get_by_test_id("wb-queues")).to_contain_text("support")
        shot(boss, "wallboard")

        row.get_by_role("combobox").select_option("Meeting")
        row.get_by_role("button", name="Force Not Ready").click()
        forced_at = time.monotonic()
        state = page.get_by_test_id("agent-state")
        expect(state).to_have_attribute("data-state", "not_ready", timeout=1_000)
        assert time.monotonic() - forced_at < 1.0 + 0.2  # Playwright's own polling slack
        expect(state).to_contain_text("Meeting")
        expect(row.get_by_test_id("wb-state")).to_have_text("Not Ready")
    finally:
        boss_context.close()
    leave(page)
