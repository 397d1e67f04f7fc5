"""Offers that must not be lost: a dropped live stream, an ignored offer."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from browser import close_without_reply, go_ready, leave, log_in, shot
from mail import customer_mail
from playwright.sync_api import Browser, Page, WebSocketRoute, expect
from scenario import demo_login
from stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def wait_until_offered(base_url: str, service: str, seconds: float = 30) -> None:
    login, password = demo_login("supervisor-1")
    with httpx.Client(base_url=base_url, timeout=10) as http:
        token = http.post("/auth/login", json={"login": login, "password": password}).json()
        http.headers["Authorization"] = f"Bearer {token['token']}"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            view = http.get("/supervisor/queues").json()["services"]
            if view.get(service, {}).get("offered"):
                return
            time.sleep(0.2)
    raise AssertionError(f"no offer of {service} was made in {seconds:.0f} s")


def test_an_offer_made_while_the_live_stream_is_cut_is_on_screen_after_reconnecting(
    page: Page, base_url: str, stack: Stack
) -> None:
    cut = {"on": False}
    routes: list[WebSocketRoute] = []

    def live(route: WebSocketRoute) -> None:
        if cut["on"]:
            route.close(code=1011, reason="cut by the test")
            return
        route.connect_to_server()
        routes.append(route)

    page.route_web_socket(re.compile(r".*/me/live.*"), live)
    log_in(page, base_url, "alice")
    go_ready(page)
    live_badge = page.get_by_role("status").filter(has_text=re.compile("Live|Offline"))
    expect(live_badge).to_have_text("Live")

    cut["on"] = True
    for route in routes:
        route.close(code=1011, reason="cut by the test")
    expect(live_badge).to_have_text("Offline: reconnecting…")
    customer_mail(stack, "Parcel never arrived", "My parcel 77 never arrived. Grace")
    # the offer is made while the page cannot hear it (the supervisor's queue view says so)
    wait_until_offered(base_url, "support")
    shot(page, "offline")
    cut["on"] = False

    offer = page.get_by_role("alertdialog")
    expect(offer).to_be_visible(timeout=20_000)
    expect(offer.get_by_test_id("offer-subject")).to_have_text("Parcel never arrived")
    expect(live_badge).to_have_text("Live")
    offer.get_by_role("button", name="Accept").click()
    close_without_reply(page)
    leave(page)


def test_an_ignored_offer_times_out_to_rona_and_goes_to_a_second_agent(
    page: Page,
    browser: Browser,
    base_url: str,
    stack: Stack,
    browser_context_args: dict[str, object],
) -> None:
    log_in(page, base_url, "farid")
    go_ready(page)
    customer_mail(stack, "Router keeps rebooting", "It reboots every hour. Grace")
    offer = page.get_by_role("alertdialog")
    expect(offer).to_be_visible(timeout=30_000)

    second_context = browser.new_context(**browser_context_args)  # type: ignore[arg-type]
    try:
        chloe = second_context.new_page()
        log_in(chloe, base_url, "chloe")
        go_ready(chloe)
        expect(offer).to_be_hidden(timeout=45_000)  # nobody answered: the countdown ran out
        expect(page.get_by_test_id("agent-state")).to_have_attribute("data-state", "rona")
        shot(page, "rona")
        again = chloe.get_by_role("alertdialog")
        expect(again).to_be_visible(timeout=30_000)
        expect(again.get_by_test_id("offer-subject")).to_have_text("Router keeps rebooting")
        again.get_by_role("button", name="Accept").click()
        close_without_reply(chloe)
        leave(chloe)
    finally:
        second_context.close()
    leave(page)
