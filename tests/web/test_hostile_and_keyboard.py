"""Hostile customer HTML shows inert; the desktop works with the keyboard alone."""

from __future__ import annotations

import re

import pytest
from browser import close_without_reply, go_ready, leave, log_in, shot
from mail import customer_mail
from playwright.sync_api import Page, Request, expect
from stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

HOSTILE = """<html><body>
<p id="hello">Hello, please see my <b>invoice</b>.</p>
<script>console.log("PWNED-script"); document.title = "PWNED";</script>
<img src="https://tracker.example.net/pixel.gif?case=1" onerror="console.log('PWNED-onerror')">
<a href="javascript:console.log('PWNED-link')" id="evil">click me</a>
<div onmouseover="console.log('PWNED-hover')" style="background:url(https://tracker.example.net/bg.png)">
hover</div>
<iframe src="https://tracker.example.net/frame"></iframe>
</body></html>"""


def test_hostile_html_runs_no_script_and_loads_nothing_remote(
    page: Page, base_url: str, stack: Stack
) -> None:
    console: list[str] = []
    remote: list[str] = []
    page.on("console", lambda message: console.append(message.text))

    def watch(request: Request) -> None:
        if not request.url.startswith(base_url) and not request.url.startswith("data:"):
            remote.append(request.url)

    page.context.on("request", watch)
    blocked: set[str] = set()

    def failed(request: Request) -> None:
        if request.failure == "csp":
            blocked.add(request.url)

    page.context.on("requestfailed", failed)
    page.context.on("console", lambda message: console.append(message.text))
    log_in(page, base_url, "bruno")
    go_ready(page)
    customer_mail(
        stack,
        "Hostile invoice",
        "Hello, please see my invoice.",
        sender="Mallory <mallory@example.net>",
        html=HOSTILE,
    )
    offer = page.get_by_role("alertdialog")
    expect(offer).to_be_visible(timeout=30_000)
    offer.get_by_role("button", name="Accept").click()
    sender = page.get_by_test_id("email-from").filter(has_text="mallory@example.net")
    email = page.get_by_test_id("email").filter(has=sender)
    email.get_by_role("button", name="Show formatted").click()
    frame_element = email.get_by_test_id("email-html")
    expect(frame_element).to_have_attribute("sandbox", "")
    frame = page.frame_locator("[data-testid=email-html]")
    expect(frame.locator("body")).to_contain_text("Hello, please see my invoice")
    frame.get_by_text("click me").click(timeout=5_000)
    frame.get_by_text("hover").hover()
    shot(page, "hostile-html")

    # everything the page asked for by now came from this origin; the frame was answered
    # with its own CSP (sandbox, no remote loads)
    answer = page.request.get(frame_element.get_attribute("src") or "")
    assert "sandbox" in answer.headers["content-security-policy"]
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert not [line for line in console if "PWNED" in line], console
    # the browser may try a remote URL of the mail; the frame's CSP must stop each one before
    # it leaves the machine (Chromium reports it failed with "csp")
    assert all(url in blocked for url in remote), (remote, blocked)
    assert page.title() != "PWNED"
    close_without_reply(page)
    leave(page)


def test_the_first_half_of_a_conversation_with_the_keyboard_alone(
    page: Page, base_url: str, stack: Stack
) -> None:
    page.goto(base_url + "/")
    expect(page.get_by_label("Login")).to_be_focused()  # the form takes the focus
    page.keyboard.type("dmitri")
    page.keyboard.press("Tab")
    page.keyboard.type("dmitri-demo-pass")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Log out", exact=True)).to_be_visible()

    page.keyboard.press("Alt+y")  # Ready
    expect(page.get_by_test_id("agent-state")).to_have_attribute("data-state", "ready")
    customer_mail(
        stack,
        "Quote for 40 seats",
        "Could you send a quote for 40 seats? Grace",
        to="sales@switchboard.local",
    )
    offer = page.get_by_role("alertdialog")
    expect(offer).to_be_visible(timeout=30_000)
    expect(offer.get_by_role("button", name="Accept")).to_be_focused()
    page.keyboard.press("Alt+a")  # accept
    expect(page.get_by_test_id("case-view")).to_be_visible()
    page.keyboard.press("Alt+r")  # reply
    expect(page.get_by_test_id("compose-text")).to_be_focused()
    page.keyboard.type("Dear Grace, the quote is attached to our next mail.")
    page.keyboard.press("Control+Enter")  # send
    expect(page.get_by_test_id("composer")).to_be_hidden()
    thread = page.get_by_test_id("email").filter(has_text="the quote is attached")
    expect(thread).to_be_visible(timeout=20_000)
    page.keyboard.press("Alt+d")  # disposition
    expect(page.get_by_test_id("disposition-input")).to_be_focused()
    shot(page, "keyboard")
    page.keyboard.press("Escape")
    state = page.get_by_test_id("agent-state")
    expect(state).to_have_attribute("data-state", re.compile("wrap_up|ready"), timeout=20_000)
    if state.get_attribute("data-state") == "wrap_up":
        page.keyboard.press("Alt+y")
    expect(state).to_have_attribute("data-state", "ready")
    leave(page)
