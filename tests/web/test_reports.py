"""The supervisor's Reports view in a real browser (issue 20): a case opened by mail today shows
in the support service's figures while the view is open, without asking again and keeping the
chosen service, and the CSV download carries the same figure."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from browser import close_without_reply, go_ready, leave, log_in, shot
from mail import customer_mail
from playwright.sync_api import Browser, Page, expect
from stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _opened(page: Page) -> int:
    """Cases opened in support today as the table shows them (no row yet: none)."""
    table = page.get_by_test_id("report-services")
    expect(table).to_be_visible()
    cell = table.locator("tr[data-service='support'] [data-figure='opened']")
    return int(cell.inner_text()) if cell.count() else 0


def test_a_supervisor_sees_todays_opened_case_in_reports_and_downloads_it_as_csv(
    page: Page,
    browser: Browser,
    base_url: str,
    stack: Stack,
    browser_context_args: dict[str, object],
) -> None:
    log_in(page, base_url, "supervisor-1")
    page.get_by_role("link", name="Reports").click()
    expect(page).to_have_url(f"{base_url}/#/reports")
    page.get_by_role("form", name="Period").get_by_label("Service").select_option("support")
    show = page.get_by_role("button", name="Show", exact=True)
    show.click()
    before = _opened(page)

    customer_mail(stack, "Reports count me", "Hello, please count this case. Ada")
    # nobody presses Show: the view follows the live stream (reporting folds case.created
    # from its own queue meanwhile) and asks the shown period again by itself
    deadline = time.monotonic() + 60
    while (now := _opened(page)) <= before and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert now >= before + 1, f"opened in support stayed at {now} (was {before})"
    # the chosen service is still the one shown: only support's row
    period = page.get_by_role("form", name="Period")
    expect(period.get_by_label("Service")).to_have_value("support")
    rows = page.get_by_test_id("report-services").locator("tbody tr[data-service]")
    assert set(rows.evaluate_all("rows => rows.map(r => r.dataset.service)")) == {"support"}
    shot(page, "reports")

    services = page.get_by_role("region", name="Services")
    with page.expect_download() as download:
        services.get_by_role("link", name="Download CSV").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    rows = [r for r in csv.DictReader(text.splitlines()) if r["service"] == "support"]
    # the same figure, or higher when another case opened meanwhile (figures only grow)
    assert len(rows) == 1 and int(rows[0]["opened"]) >= now, text

    # a period that ends before it begins: the gateway's 422 names `to`, shown beside it
    period.get_by_label("To").fill("2020-01-01")
    show.click()
    expect(period.locator("#report-to-error")).to_contain_text("to must be after from")

    # the mail is worked and finished, so no later test finds it waiting in support's queue
    agent_context = browser.new_context(**browser_context_args)  # type: ignore[arg-type]
    try:
        agent = agent_context.new_page()
        log_in(agent, base_url, "alice")
        go_ready(agent)
        offer = agent.get_by_role("alertdialog")
        expect(offer).to_be_visible(timeout=30_000)
        expect(offer.get_by_test_id("offer-subject")).to_have_text("Reports count me")
        offer.get_by_role("button", name="Accept").click()
        close_without_reply(agent)
        leave(agent)
    finally:
        agent_context.close()
