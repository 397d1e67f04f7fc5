"""The supervisor's wallboard in a real browser, beside an agent's desktop."""

from __future__ import annotations

import pytest
from browser import go_ready, leave, log_in, shot
from playwright.sync_api import Browser, Page, expect
from scenario import demo_login

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


# Stamps each live frame with the page's own clock as it arrives, before the app handles it.
STAMP_FRAMES = """
window.__sbFrames = [];
const Socket = window.WebSocket;
window.WebSocket = class extends Socket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (message) => {
      try {
        const frame = JSON.parse(message.data);
        const at = performance.now();
        window.__sbFrames.push({ event: frame.event, state: frame.data?.state, at });
      } catch {}
    });
  }
};
"""

# Stamps the moment the state bar first shows Not Ready, with the same clock, and on the
# machine's wall clock (epoch ms) to compare with the supervisor's click in another page.
WATCH_STATE = """
window.__sbShown = null;
window.__sbShownEpoch = null;
new MutationObserver(() => {
  const bar = document.querySelector("[data-testid=agent-state]");
  if (window.__sbShown === null && bar?.getAttribute("data-state") === "not_ready") {
    window.__sbShown = performance.now();
    window.__sbShownEpoch = performance.timeOrigin + performance.now();
  }
}).observe(document.body, { attributes: true, subtree: true, childList: true });
"""

# Stamps (epoch ms) the supervisor's click on a force button, as the page receives it.
STAMP_FORCE = """
window.__sbForcedAt = null;
document.addEventListener("click", (event) => {
  if (event.target.closest("button")?.textContent?.includes("Force Not Ready")) {
    window.__sbForcedAt = performance.timeOrigin + performance.now();
  }
}, true);
"""


def test_a_supervisor_forces_an_agent_not_ready_and_the_agent_screen_shows_it_live(
    page: Page, browser: Browser, base_url: str, browser_context_args: dict[str, object]
) -> None:
    page.add_init_script(STAMP_FRAMES)
    log_in(page, base_url, "bruno")
    go_ready(page)
    page.evaluate(WATCH_STATE)

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
        boss.evaluate(STAMP_FORCE)
        row.get_by_role("button", name="Force Not Ready").click()
        state = page.get_by_test_id("agent-state")
        expect(state).to_have_attribute("data-state", "not_ready")
        expect(state).to_contain_text("Meeting")
        # pushed, not polled: from the frame reaching the page to the screen showing it, by
        # the page's own clock
        pushed = page.evaluate(
            """() => window.__sbFrames.find(
                (f) => f.event === "agent.state_changed" && f.state === "not_ready")?.at ?? null"""
        )
        shown = page.evaluate("() => window.__sbShown")
        assert pushed is not None, "the Not Ready came by no live frame"
        assert shown is not None
        assert 0 <= shown - pushed < 1000, f"shown {shown - pushed:.0f} ms after the frame"
        # and what the supervisor sees: from the click to the agent's screen (one machine clock)
        forced_at = boss.evaluate("() => window.__sbForcedAt")
        shown_at = page.evaluate("() => window.__sbShownEpoch")
        assert forced_at is not None and shown_at is not None
        assert shown_at - forced_at < 1000, f"shown {shown_at - forced_at:.0f} ms after the click"
        expect(row.get_by_test_id("wb-state")).to_have_text("Not Ready")
    finally:
        boss_context.close()
    leave(page)


def test_a_supervisor_changes_an_agents_teams_services_and_skills(
    page: Page, base_url: str
) -> None:
    log_in(page, base_url, "supervisor-1")
    page.get_by_role("link", name="People").click()
    row = page.locator("tr[data-person='dmitri']")
    expect(row.get_by_test_id("person-teams")).to_have_text("sales")
    row.get_by_role("button", name="Edit dmitri").click()
    form = page.get_by_role("form", name="Save person")
    expect(form.get_by_label("Id")).to_have_value("dmitri")
    support = form.get_by_role("checkbox", name="support")
    expect(support).not_to_be_checked()
    support.check()  # the support service is its team's: ticking it adds the team
    expect(form.get_by_label("Teams")).to_have_value("sales, support")
    form.get_by_label("Skills").fill("english:6, russian:9")
    form.get_by_role("button", name="Save person").click()
    expect(form.get_by_role("status")).to_have_text("dmitri ✓")
    page.reload()  # what the owners now hold, read again
    row = page.locator("tr[data-person='dmitri']")
    expect(row.get_by_test_id("person-teams")).to_have_text("sales, support")
    expect(row.get_by_test_id("person-skills")).to_have_text("english:6, russian:9")
    shot(page, "people")
    row.get_by_role("button", name="Edit dmitri").click()
    form.get_by_role("checkbox", name="support").uncheck()
    form.get_by_role("button", name="Save person").click()
    expect(row.get_by_test_id("person-teams")).to_have_text("sales")


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
