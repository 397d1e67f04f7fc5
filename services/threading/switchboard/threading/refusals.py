"""Refusals threading gives in one wording everywhere (the thread view, lookups, search,
contact history), so that no answer tells more than another."""

from __future__ import annotations

from switchboard.runtime.errors import Refused


def hidden_case(case_number: int, field: str = "case_number") -> Refused:
    """The one answer for a case that is not there *and* for a case this person may not see:
    the same code, words and field, so the answer does not tell that the case exists."""
    return Refused("no_such_case", f"there is no case {case_number}", field=field)
