"""The agent's day in a real browser: an email conversation from offer to closed case."""

from __future__ import annotations

import re

import pytest
from browser import go_ready, leave, log_in, shot
from mail import customer_mail, plain_text, wait_for_mail
from playwright.sync_api import Page, expect
from stack import SmtpSink, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_an_agent_answers_a_customer_mail_from_offer_to_closed_case(
    page: Page, base_url: str, stack: Stack, sink: SmtpSink
) -> None:
    log_in(page, base_url, "alice")
    go_ready(page)

    customer_mail(
        stack,
        "Invoice 2026-113 charged twice",
        "Hello, invoice 2026-113 charges me twice. Grace",
        cc="Ada Lovelace <ada@example.org>",
    )
    offer = page.get_by_role("alertdialog")
    expect(offer).to_be_visible(timeout=30_000)
    expect(offer.get_by_test_id("offer-customer")).to_contain_text("Grace Hopper")
    expect(offer.get_by_test_id("offer-subject")).to_have_text("Invoice 2026-113 charged twice")
    expect(offer.get_by_test_id("offer-countdown")).to_have_text(re.compile(r"^\d+ s$"))
    shot(page, "offer-popup")
    offer.get_by_role("button", name="Accept").click()
    expect(offer).to_be_hidden()

    case = page.get_by_test_id("case-view")
    first = case.get_by_test_id("email").filter(has_text="charges me twice")
    expect(first.get_by_test_id("email-from")).to_have_text("Grace Hopper <grace@example.org>")
    expect(first.get_by_test_id("email-when")).to_have_text(re.compile(r"\d"))
    expect(first.get_by_test_id("email-to")).to_contain_text("support@switchboard.local")
    expect(first.get_by_test_id("email-cc")).to_have_text("Ada Lovelace <ada@example.org>")
    expect(first.get_by_test_id("email-subject")).to_have_text("Invoice 2026-113 charged twice")
    expect(page.get_by_test_id("agent-state")).to_have_attribute("data-state", "busy")
    thread_id = page.get_by_test_id("thread-id").inner_text()

    page.get_by_role("button", name="Reply", exact=False).first.click()
    composer = page.get_by_test_id("composer")
    composer.get_by_test_id("compose-template").select_option(label="Signature")
    composer.get_by_test_id("compose-cc").fill("Ada Lovelace <ada@example.org>")
    composer.get_by_test_id("compose-files").set_input_files(
        files=[{"name": "refund.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 refund"}]
    )
    expect(composer.get_by_role("list", name="Attachments")).to_contain_text("refund.pdf")
    composer.get_by_test_id("compose-text").fill("Dear Grace, we refunded the double charge.")
    composer.get_by_label("Done with this email").uncheck()  # keep the case for the answer
    shot(page, "composer")
    composer.get_by_role("button", name="Send").click()
    expect(composer).to_be_hidden()

    reply = wait_for_mail(
        sink, lambda m: "grace@example.org" in str(m["To"]) and "refunded" in plain_text(m)
    )
    assert thread_id in str(reply["Subject"])
    assert "ada@example.org" in str(reply["Cc"])
    assert "Alice Martin" in plain_text(reply)  # the template, filled in
    assert [part.get_filename() for part in reply.iter_attachments()] == ["refund.pdf"]

    customer_mail(
        stack,
        f"Re: {reply['Subject']}",
        "Thank you, the refund arrived. Grace",
        headers={"In-Reply-To": str(reply["Message-ID"]), "References": str(reply["Message-ID"])},
    )
    answer = case.get_by_test_id("email").filter(has_text="the refund arrived")
    expect(answer).to_be_visible(timeout=30_000)
    shot(page, "desktop")

    page.get_by_test_id("disposition-input").select_option("Customer confirmed")
    page.get_by_role("button", name="Set", exact=True).click()
    expect(page.get_by_test_id("case-status")).to_have_text("closed", timeout=15_000)
    state = page.get_by_test_id("agent-state")
    expect(state).not_to_have_attribute("data-state", "busy", timeout=15_000)
    if state.get_attribute("data-state") == "wrap_up":
        page.get_by_role("button", name="Go Ready").click()
    expect(state).to_have_attribute("data-state", "ready")
    leave(page)
