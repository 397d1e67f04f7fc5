"""The supervisor's wallboard in a real browser, beside an agent's desktop."""

from __future__ import annotations

import time

import pytest
from browser import go_ready, leave, log_in, shot
from playwright.sync_api import Browser, Page, expect
from scenario import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_a_supervisor_forces_an_agent_not_ready_and_the_agent_screen_shows_it_live(
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
        # pushed, not polled: the page asks nothing; the time it took is printed, not asserted
        # (speed is measured by bench/bench_desktop.py)
        expect(state).to_have_attribute("data-state", "not_ready", timeout=5_000)
        took = time.monotonic() - forced_at
        print(f"forced Not Ready shown on the agent's screen after {took:.2f} s")
        expect(state).to_contain_text("Meeting")
        expect(row.get_by_test_id("wb-state")).to_have_text("Not Ready")
    finally:
        boss_context.close()
    leave(page)


def test_the_app_speaks_the_browser_language_and_switches_on_request(
    browser: Browser, base_url: str, browser_context_args: dict[str, object]
) -> None:
    context = browser.new_context(**{**browser_context_args, "locale": "fr-FR"})  # type: ignore[arg-type]
    try:
        page = context.new_page()
        page.goto(base_url + "/")
        expect(page.get_by_role("button", name="Se connecter")).to_be_visible()
        page.get_by_label("Identifiant").fill("supervisor-1")
        page.get_by_label("Mot de passe").fill(demo_login("supervisor-1")[1])
        page.get_by_role("button", name="Se connecter").click()
        expect(page.get_by_role("heading", name="Files")).to_be_visible()
        page.get_by_label("Langue").select_option("de")
        expect(page.get_by_role("heading", name="Warteschlangen")).to_be_visible()
        expect(page.locator("html")).to_have_attribute("lang", "de")
        page.get_by_role("button", name="Abmelden", exact=True).first.click()
        expect(page.get_by_role("button", name="Anmelden")).to_be_visible()
    finally:
        context.close()
