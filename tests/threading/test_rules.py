"""Threading rules tested directly, without servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.threading import rules
from switchboard.threading.config import ServiceConfig, ThreadingConfig, load_file
from switchboard.threading.masking import (
    Span,
    luhn_valid,
    mask_card_numbers,
    mask_spans,
    propagation_pieces,
    redact_everywhere,
    span_problem,
)
from switchboard.threading.subjects import (
    clean_subject,
    find_tags,
    outbound_subject,
    strip_prefixes,
)
from switchboard.threading.threadids import ALPHABET, ThreadIds

KEY = b"test-thread-key-0123456789abcdef"
IDS = ThreadIds(KEY)
REPO = Path(__file__).resolve().parents[2]


# -- thread identifiers ------------------------------------------------------------------------


def test_minted_ids_are_12_letters_and_digits_and_verify() -> None:
    minted = {IDS.mint() for _ in range(500)}
    assert len(minted) == 500
    for value in minted:
        assert len(value) == 12 and set(value) <= set(ALPHABET)
        assert IDS.verify(value)
        assert IDS.verify(value.lower())  # mail clients may change case


def test_forged_truncated_and_foreign_ids_fail_the_check() -> None:
    value = IDS.mint()
    assert not IDS.verify(value[:-1])
    assert not IDS.verify(value + "A")
    flipped = value[:5] + ("A" if value[5] != "A" else "B") + value[6:]
    assert not IDS.verify(flipped)
    assert not ThreadIds(b"another-deployment-key-xxxxxxxx").verify(value)
    assert not IDS.verify("14355")
    assert not IDS.verify("")


def test_random_12_char_strings_almost_never_verify() -> None:
    import secrets

    hits = sum(
        IDS.verify("".join(secrets.choice(ALPHABET) for _ in range(12))) for _ in range(20000)
    )
    assert hits <= 1


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError):
        ThreadIds(b"short")


# -- subjects ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Printer broken [Ref:{id}]",
        "AW: RE: Fwd: Printer broken [Ref:{id}]",
        "SV:TR:  Re[2]: Printer broken [ Ref : {id} ]",
        "[Ref:{id}] Re: Printer broken",
        "re:  WG: Printer broken [ref:{lower}]",
        "Printer broken[Ref:{id}]and more",
    ],
)
def test_the_tag_is_found_despite_prefixes_and_mangled_spacing(subject: str) -> None:
    value = IDS.mint()
    text = subject.format(id=value, lower=value.lower())
    assert find_tags(text) == [value]
    assert clean_subject(text).startswith("Printer broken")


@pytest.mark.parametrize(
    "subject",
    [
        "Re: [Ticket#14355] Printer broken",
        "Re: case 14355",
        "Re: Printer [Ref:ABCDEFGHIJK]",  # 11 characters
        "Re: Printer [Ref:ABCDEFGHIJKLM]",  # 13 characters
        "Re: Printer ABCDEFGHIJKL",  # no tag form
    ],
)
def test_foreign_tags_bare_numbers_and_wrong_lengths_are_not_tags(subject: str) -> None:
    assert find_tags(subject) == []


def test_custom_tag_format() -> None:
    value = IDS.mint()
    assert find_tags(f"Re: Hi (#{value})", "(#{thread_id})") == [value]
    with pytest.raises(ValueError):
        find_tags("x", "no placeholder")


def test_prefixes_are_stripped_repeatedly() -> None:
    assert strip_prefixes("Re: AW:Fwd:  RE[3]: SV: TR: Hello") == "Hello"
    assert strip_prefixes("Reply needed") == "Reply needed"
    assert clean_subject("  Re:   Hello    world ") == "Hello world"


def test_outbound_subject_carries_the_tag_once() -> None:
    value = IDS.mint()
    first = outbound_subject(
        "Printer broken",
        prefix="Re:",
        thread_id=value,
        tag_format="[Ref:{thread_id}]",
        with_tag=True,
    )
    assert first == f"Re: Printer broken [Ref:{value}]"
    again = outbound_subject(
        f"AW: {first}",
        prefix="Re:",
        thread_id=value,
        tag_format="[Ref:{thread_id}]",
        with_tag=True,
    )
    assert again == first
    hidden = outbound_subject(
        "Printer broken",
        prefix="Re:",
        thread_id=value,
        tag_format="[Ref:{thread_id}]",
        with_tag=False,
    )
    assert hidden == "Re: Printer broken"


# -- matching order ------------------------------------------------------------------------------


def test_clues_come_in_matching_order_and_only_verified_ids_count() -> None:
    good, other = IDS.mint(), IDS.mint()
    found = rules.clues(
        subject=f"Re: x [Ref:{good}] [Ref:ZZZZZZZZZZZZ] [Ticket#1]",
        thread_header=other,
        in_reply_to="<parent@x>",
        references=["<a@x>", "<b@x>", "<parent@x>"],
        thread_ids=IDS,
        tag_format="[Ref:{thread_id}]",
    )
    assert [c.kind for c in found] == ["subject_tag", "header", "in_reply_to", "references"]
    assert found[0].values == (good,)
    assert found[2].values == ("parent@x",)
    assert found[3].values == ("b@x", "a@x")  # newest first, parent not repeated


def test_an_unverified_header_is_no_clue() -> None:
    found = rules.clues(
        subject="Hello",
        thread_header="ABCDEFGHIJKL",
        in_reply_to=None,
        references=[],
        thread_ids=IDS,
        tag_format="[Ref:{thread_id}]",
    )
    assert found == []


def test_references_only_join_for_participants() -> None:
    assert rules.may_join_by_message_id("Ann@Example.org", ["ann@example.org"])
    assert not rules.may_join_by_message_id("eve@example.org", ["ann@example.org"])


def test_no_automatic_answer_to_ourselves_or_to_an_address_we_cannot_send_to() -> None:
    own = {"support@switchboard.local"}
    assert rules.may_answer_automatically("ann@example.org", "normal", own)
    assert not rules.may_answer_automatically("Support@Switchboard.local", "normal", own)
    assert not rules.may_answer_automatically('"a,b"@example.org', "normal", own)


# -- closed-case policy -------------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "closed_days_ago", "classification", "mode", "expected"),
    [
        ("open", None, "normal", "reopen", "attach"),
        ("open", None, "auto_reply", "reopen", "record"),
        ("closed", 3, "normal", "reopen", "reopen"),
        ("closed", 30, "normal", "reopen", "new_linked"),
        ("closed", 3, "normal", "new_linked", "new_linked"),
        ("closed", 3, "normal", "reject", "reject"),
        ("closed", 3, "auto_reply", "reopen", "record"),
        ("closed", 3, "bounce", "reopen", "record"),
        ("closed", 3, "bounce", "reject", "record"),
    ],
)
def test_follow_up_to_a_case(
    status: str, closed_days_ago: int | None, classification: str, mode: str, expected: str
) -> None:
    closed_at = NOW - timedelta(days=closed_days_ago) if closed_days_ago is not None else None
    assert (
        rules.follow_up_action(
            case_status=status,
            closed_at=closed_at,
            classification=classification,
            policy_mode=mode,
            reopen_within_days=14,
            now=NOW,
        )
        == expected
    )


# -- automatic answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("classification", "unrouted"),
    [("auto_reply", True), ("bounce", True), ("normal", False), ("mailing_list", False)],
)
def test_automatic_mail_opening_a_case_is_filed_without_routing(
    classification: str, unrouted: bool
) -> None:
    assert rules.files_without_routing(classification) is unrouted
    assert rules.is_automatic(classification) is unrouted


@pytest.mark.parametrize(
    ("sender", "classification", "allowed"),
    [
        ("ann@example.org", "normal", True),
        ("ann@example.org", "auto_reply", False),
        ("ann@example.org", "bounce", False),
        ("ann@example.org", "mailing_list", False),
        ("MAILER-DAEMON@example.org", "normal", False),
        ("postmaster@example.org", "normal", False),
        ("no-reply@shop.example", "normal", False),
        ("noreply+x@shop.example", "normal", False),
        ("do_not_reply@shop.example", "normal", False),
        ("donotreply@shop.example", "normal", False),
        ("not-an-address", "normal", False),
    ],
)
def test_who_may_get_an_automatic_answer(sender: str, classification: str, allowed: bool) -> None:
    assert rules.may_answer_automatically(sender, classification) is allowed


def test_rate_windows() -> None:
    assert rules.rate_window(NOW, 60) == rules.rate_window(NOW + timedelta(minutes=59), 60)
    assert rules.rate_window(NOW, 60) != rules.rate_window(NOW + timedelta(minutes=60), 60)


# -- interactions, authorisation, dispositions --------------------------------------------------


def test_interaction_ids_round_trip() -> None:
    assert rules.interaction_id(14355, 1) == "case-14355"
    assert rules.interaction_id(14355, 3) == "case-14355.3"
    assert rules.parse_interaction_id("case-14355") == (14355, 1)
    assert rules.parse_interaction_id("case-14355.3") == (14355, 3)
    assert rules.parse_interaction_id("record-7") is None


def test_only_the_holder_or_a_supervisor_may_act() -> None:
    case = {"_id": 1, "interaction": {"state": "assigned", "agent_id": "a1"}}
    assert rules.holder_problem(case, "a1", "agent") is None
    assert rules.holder_problem(case, "a2", "supervisor") is None
    assert "another agent" in (rules.holder_problem(case, "a2", "agent") or "")
    ended = {"_id": 1, "interaction": {"state": "ended", "agent_id": "a1"}}
    assert rules.holder_problem(ended, "a1", "agent") is not None


def test_agents_are_kept_last_first() -> None:
    assert rules.agents_last_first(["a1", "a2"], "a2") == ["a2", "a1"]
    assert rules.agents_last_first([], "a1") == ["a1"]


def test_dispositions_per_service() -> None:
    config = ServiceConfig(
        name="s", dispositions=[{"name": "Resolved", "final": True}, {"name": "Later"}]
    )
    assert rules.check_disposition(config, "resolved") == ("Resolved", True)
    assert rules.check_disposition(config, "Later") == ("Later", False)
    assert rules.check_disposition(config, "Nope") is None


def test_references_of_a_reply() -> None:
    refs = rules.references_for_reply(["<a@x>", "b@x"], "c@x")
    assert refs == ["<a@x>", "<b@x>", "<c@x>"]
    assert len(rules.references_for_reply([f"<{i}@x>" for i in range(50)], "p@x")) == 20


def test_message_id_keys() -> None:
    assert rules.message_id_key(" <abc@x> ") == "abc@x"
    assert rules.message_id_header("abc@x") == "<abc@x>"


def test_templates_fill_known_placeholders_only() -> None:
    assert rules.fill("case {case_number} {other}", case_number=1) == "case 1 {other}"


# -- masking -----------------------------------------------------------------------------------


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("41111x")


@pytest.mark.parametrize(
    ("text", "expected", "count"),
    [
        ("card 4111 1111 1111 1111 thanks", "card **** **** **** 1111 thanks", 1),
        ("card 4111-1111-1111-1111.", "card ****-****-****-1111.", 1),
        ("amex 378282246310005", "amex ***********0005", 1),
        ("not luhn 4111 1111 1111 1112", "not luhn 4111 1111 1111 1112", 0),
        ("order 123456789012", "order 123456789012", 0),  # 12 digits
        ("phone +49 30 1234567", "phone +49 30 1234567", 0),
    ],
)
def test_card_numbers_are_masked(text: str, expected: str, count: int) -> None:
    assert mask_card_numbers(text) == (expected, count)


@given(st.text(alphabet="0123456789 -abc", max_size=60))
def test_card_masking_never_grows_or_leaks_a_luhn_number(text: str) -> None:
    masked, _ = mask_card_numbers(text)
    assert len(masked) == len(text)
    again, count = mask_card_numbers(masked)
    assert count == 0 and again == masked


def test_spans_are_starred_and_fragments_returned() -> None:
    text = "My password is hunter22\nand PIN 1234"
    masked, fragments = mask_spans(text, [Span(15, 23), Span(32, 36)])
    assert masked == "My password is ********\nand PIN ****"
    assert fragments == ["hunter22", "1234"]
    assert span_problem(text, 5, 100) is not None
    assert span_problem(text, 5, 5) is not None
    assert span_problem(text, 0, 3) is None


def test_fragments_are_redacted_in_every_string_of_a_document() -> None:
    pieces = propagation_pieces(["hunter22\nsecond line", "ab"])
    assert "ab" not in pieces  # too short to search elsewhere
    doc = {"text": "> hunter22", "nested": [{"x": "second line!"}], "n": 3}
    new, changed = redact_everywhere(doc, pieces)
    assert changed
    assert new == {"text": "> ********", "nested": [{"x": "****** ****!"}], "n": 3}


# -- configuration -----------------------------------------------------------------------------


def test_the_demo_configuration_loads() -> None:
    services = {s.name: s for s in load_file(REPO / "deploy" / "demo" / "threading.json")}
    assert {"support", "sales"} <= set(services)
    assert services["support"].auto_ack.enabled
    assert services["sales"].thread_id_placement == "header"
    assert any(d.final for d in services["support"].dispositions)
    assert any(not d.final for d in services["support"].dispositions)


def test_an_unknown_service_gets_defaults() -> None:
    config = ThreadingConfig(services={"support": ServiceConfig(name="support")})
    assert config.for_service("other").name == "other"
    assert not config.known("other")


def test_a_bad_tag_format_is_refused() -> None:
    with pytest.raises(ValueError):
        ServiceConfig(subject_tag_format="no placeholder")


@pytest.mark.parametrize(
    ("current", "new", "changes"),
    [
        (None, "sent", True),
        ("requested", "failed_temporarily", True),
        ("failed_temporarily", "sent", True),
        ("failed_temporarily", "failed_temporarily", True),
        ("sent", "failed_temporarily", False),
        ("sent", "bounced", True),
        ("bounced", "sent", False),
        ("failed", "sent", False),
        ("sent", "failed", True),
    ],
)
def test_delivery_news_never_goes_backwards(current: str | None, new: str, changes: bool) -> None:
    assert rules.delivery_may_change(current, new) is changes


def test_a_broken_service_document_keeps_its_previous_configuration() -> None:
    good = [
        {"_id": "support", "wrap_up": True},
        {"_id": "sales", "thread_id_placement": "header"},
    ]
    first, problems = ThreadingConfig.from_documents(good)
    assert problems == {} and first.for_service("support").wrap_up
    broken = [{"_id": "support", "wrap_up": "sometimes"}, *good[1:], {"_id": "new", "x": 1}]
    second, problems = ThreadingConfig.from_documents(broken, previous=first)
    assert set(problems) == {"support", "new"}
    assert problems["support"].startswith("wrap_up:")
    assert second.for_service("support").wrap_up  # the last good one
    assert not second.known("new")
    assert second.for_service("sales").thread_id_placement == "header"
