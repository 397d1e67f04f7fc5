"""The case tools of the agent desktop in a real browser: drafts, forward, follow-up, new
outbound mail, masking, change of service, take next and transfer. Each test works one case
of its own and closes it, so no mail is left waiting for the next module's agents."""

from __future__ import annotations

import re

import pytest
from browser import close_without_reply, go_ready, leave, log_in, shot
from mail import customer_mail, plain_text, wait_for_mail
from playwright.sync_api import Browser, Page, expect
from stack import SmtpSink, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def accept_mail(page: Page, stack: Stack, subject: str, text: str) -> None:
    """A customer's mail is offered to the (Ready) agent, who accepts it."""
    customer_mail(stack, subject, text)
    offer = page.get_by_role("alertdialog")
    expect(offer).to_be_visible(timeout=30_000)
    expect(offer.get_by_test_id("offer-subject")).to_have_text(subject)
    offer.get_by_role("button", name="Accept").click()
    expect(page.get_by_test_id("case-view")).to_be_visible()


def test_a_saved_draft_comes_back_and_forward_and_follow_up_reach_their_people(
    page: Page, base_url: str, stack: Stack, sink: SmtpSink
) -> None:
    log_in(page, base_url, "chloe")
    go_ready(page)
    accept_mail(page, stack, "Router keeps rebooting", "My router reboots every hour. Grace")
    case = page.get_by_test_id("case-view")

    case.get_by_role("button", name="Reply", exact=False).first.click()
    composer = page.get_by_test_id("composer")
    composer.get_by_test_id("compose-text").fill("Half-written answer about the firmware")
    composer.get_by_role("button", name="Save draft").click()
    expect(composer.get_by_role("status")).to_have_text("Draft saved")

    page.reload()  # the desk is left and opened again: the draft is the thread's
    page.get_by_test_id("my-work").get_by_role("button").first.click()
    case.get_by_role("button", name="Reply", exact=False).first.click()
    expect(composer.get_by_test_id("compose-text")).to_have_value(
        "Half-written answer about the firmware"
    )
    expect(composer.get_by_test_id("compose-to")).to_have_value("Grace Hopper <grace@example.org>")
    composer.get_by_role("button", name="Discard").click()
    expect(composer).to_be_hidden()

    case.get_by_role("button", name="Forward").click()
    composer.get_by_test_id("compose-to").fill("Network Team <network@example.net>")
    composer.get_by_test_id("compose-text").fill("Please check this customer's line.")
    composer.get_by_role("button", name="Send").click()
    expect(composer).to_be_hidden()
    forwarded = wait_for_mail(sink, lambda m: "network@example.net" in str(m["To"]))
    assert "Please check this customer's line." in plain_text(forwarded)
    assert "reboots every hour" in forwarded.as_string()  # the customer's mail goes along

    case.get_by_role("button", name="Follow-up").click()
    expect(composer.get_by_test_id("compose-to")).to_have_value("Grace Hopper <grace@example.org>")
    composer.get_by_label("Subject").fill("Your router: next steps")
    composer.get_by_test_id("compose-text").fill("We will replace the router this week.")
    composer.get_by_label("Done with this email").uncheck()
    composer.get_by_role("button", name="Send").click()
    expect(composer).to_be_hidden()
    follow_up = wait_for_mail(sink, lambda m: "replace the router" in plain_text(m))
    assert "grace@example.org" in str(follow_up["To"])
    assert "Your router: next steps" in str(follow_up["Subject"])
    close_without_reply(page)
    leave(page)


def test_new_outbound_mail_masking_and_a_change_of_service(
    page: Page, base_url: str, stack: Stack, sink: SmtpSink
) -> None:
    log_in(page, base_url, "chloe")
    go_ready(page)
    accept_mail(
        page,
        stack,
        "Account access",
        "My account password is Tulip-Garden-42, please reset it. Grace",
    )
    case = page.get_by_test_id("case-view")

    case.get_by_role("button", name="New email").click()
    composer = page.get_by_test_id("composer")
    composer.get_by_test_id("compose-to").fill("Billing <billing@example.com>")
    composer.get_by_label("Subject").fill("Password reset for a customer")
    composer.get_by_test_id("compose-text").fill("A customer asks for a password reset.")
    composer.get_by_role("button", name="Send").click()
    expect(composer).to_be_hidden()
    outbound = wait_for_mail(sink, lambda m: "billing@example.com" in str(m["To"]))
    assert "Password reset for a customer" in str(outbound["Subject"])

    text = case.locator("[data-email-text]").filter(has_text="Tulip-Garden-42")
    text.evaluate(
        """(element) => {
            const node = [...element.childNodes].find((n) => n.textContent.includes("Tulip"));
            const at = node.textContent.indexOf("Tulip-Garden-42");
            const range = document.createRange();
            range.setStart(node, at);
            range.setEnd(node, at + "Tulip-Garden-42".length);
            const selection = window.getSelection();
            selection.removeAllRanges();
            selection.addRange(range);
        }"""
    )
    case.get_by_role("button", name="Mask selection").click()
    first = case.get_by_test_id("email").filter(has_text="My account password is")
    expect(first).to_contain_text("Masked")
    expect(first).not_to_contain_text("Tulip-Garden-42")

    page.get_by_label("Change service").select_option("sales")
    page.get_by_role("button", name="Change service").click()
    # closed straight away, as a person might: the close waits for the change to be shown, so
    # it carries the new service's disposition (not the old one's, which sales would refuse)
    close_without_reply(page)
    expect(case.get_by_test_id("case-service")).to_have_text("sales")
    shot(page, "case-tools")
    leave(page)


def test_take_next_from_the_team_queue_then_transfer_to_a_named_agent(
    page: Page,
    browser: Browser,
    base_url: str,
    stack: Stack,
    browser_context_args: dict[str, object],
) -> None:
    log_in(page, base_url, "chloe")  # at work but Not Ready: the mail waits in the team queue
    page.locator("#nr-reason").select_option("Lunch")
    page.get_by_role("button", name="Not Ready", exact=True).click()
    state = page.get_by_test_id("agent-state")
    expect(state).to_have_attribute("data-state", "not_ready", timeout=30_000)
    customer_mail(  # a new customer: no agent of theirs to keep it for (personal queue)
        stack,
        "Opening hours at Easter",
        "Are you open on Easter Monday? Ken",
        sender="Ken Thompson <ken@example.org>",
    )
    team = page.get_by_role("region", name=re.compile("^Team queue"))
    expect(team).to_contain_text("Opening hours at Easter", timeout=30_000)
    team.get_by_role("button", name="Take next").click()
    page.get_by_test_id("my-work").get_by_role("button").first.click()
    case = page.get_by_test_id("case-view")
    expect(case).to_contain_text("Are you open on Easter Monday?")

    colleague_context = browser.new_context(**browser_context_args)  # type: ignore[arg-type]
    try:
        colleague = colleague_context.new_page()
        log_in(colleague, base_url, "farid")
        go_ready(colleague)
        page.get_by_label("To agent").fill("farid")
        page.get_by_role("button", name="Transfer").click()
        offer = colleague.get_by_role("alertdialog")
        expect(offer).to_be_visible(timeout=30_000)
        expect(offer.get_by_test_id("offer-subject")).to_have_text("Opening hours at Easter")
        offer.get_by_role("button", name="Accept").click()
        expect(colleague.get_by_test_id("case-view")).to_contain_text("Easter Monday")
        expect(page.get_by_test_id("my-work")).to_have_count(0)  # chloe holds nothing now
        close_without_reply(colleague)
        leave(colleague)
    finally:
        colleague_context.close()
    leave(page)
