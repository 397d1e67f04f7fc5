"""What a person does in the browser, shared by the tests (log in, go Ready, leave)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect
from scenario import demo_login
from stack import REPO

ARTIFACTS = REPO / "test-artifacts" / "web"


def shot(page: Page, name: str) -> Path:
    """Save the key screen of a test as an artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def log_in(page: Page, base_url: str, person_id: str) -> None:
    login, password = demo_login(person_id)
    page.goto(base_url + "/")
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out", exact=True)).to_be_visible()


def go_ready(page: Page) -> None:
    page.get_by_role("button", name="Go Ready").click()
    expect(page.get_by_test_id("agent-state")).to_have_attribute("data-state", "ready")


def leave(page: Page) -> None:
    """End the agent's working session so the next test has the floor to itself."""
    end = page.get_by_role("button", name="End working session")
    if end.is_visible():
        end.click()
        expect(page.get_by_test_id("agent-state")).to_have_attribute("data-state", "logged_out")


def close_without_reply(page: Page) -> None:
    """Finish the open case without answering (and end wrap-up), leaving the agent Ready."""
    expect(page.get_by_test_id("case-view")).to_be_visible()
    page.get_by_role("button", name="Close without reply").click()
    expect(page.get_by_test_id("case-status")).to_have_text("closed", timeout=15_000)
    state = page.get_by_test_id("agent-state")
    expect(state).not_to_have_attribute("data-state", "busy", timeout=15_000)
    if state.get_attribute("data-state") == "wrap_up":
        page.get_by_role("button", name="Go Ready").click()
    expect(state).to_have_attribute("data-state", "ready")
