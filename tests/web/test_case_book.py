"""My Cases and case search in a real browser (issue 20): the case an agent accepted is in
their list, a search by its words finds it with a preview, a result opens the case with its
contact's history, and a search by number, status and service finds it again."""

from __future__ import annotations

import re

import pytest
from browser import close_without_reply, go_ready, leave, log_in
from mail import customer_mail
from playwright.sync_api import Page, expect
from stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_my_cases_and_search_find_the_accepted_case_and_open_it(
    page: Page, base_url: str, stack: Stack
) -> None:
    log_in(page, base_url, "alice")
    go_ready(page)
    customer_mail(stack, "Parcel lost near Quimper", "Hello, my parcel vanished in Quimper. Ada")
    offer = page.get_by_role("alertdialog")
    expect(offer).to_be_visible(timeout=30_000)
    offer.get_by_role("button", name="Accept").click()
    expect(offer).to_be_hidden()

    mine = page.get_by_test_id("my-cases")
    expect(mine).to_contain_text("Parcel lost near Quimper", timeout=30_000)

    page.get_by_role("searchbox", name="Words").fill("quimper vanished")
    page.get_by_role("button", name="Search", exact=True).click()
    results = page.get_by_test_id("search-results")
    row = results.get_by_role("button").filter(has_text="Parcel lost near Quimper")
    # the preview is the case's last message: here the service's automatic acknowledgement
    expect(row).to_contain_text("Your case number is")
    row.click()
    expect(page.get_by_test_id("case-view")).to_contain_text("my parcel vanished")
    expect(page.get_by_test_id("contact-history")).to_contain_text("Parcel lost near Quimper")

    number = re.search(r"Case (\d+)", row.inner_text())
    assert number is not None
    search = page.get_by_role("region", name="Search cases")
    search.get_by_role("searchbox", name="Words").fill("")
    search.get_by_text("More criteria").click()
    search.get_by_role("spinbutton", name="Case").fill(number.group(1))
    search.get_by_role("combobox", name="Status").fill("open")
    search.get_by_role("combobox", name="Service").select_option("support")
    search.get_by_role("button", name="Search", exact=True).click()
    found = results.get_by_role("button")
    expect(found).to_have_count(1)
    expect(found).to_contain_text("Parcel lost near Quimper")

    # the floor back for the next test: the case finished, the working session ended
    close_without_reply(page)
    leave(page)
