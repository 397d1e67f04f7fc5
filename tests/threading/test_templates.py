"""Reply templates: the rules directly, then stored, listed, edited and rendered into real
replies over the real bus and database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from switchboard.contracts import Outcome
from switchboard.contracts import cases as c
from switchboard.contracts.mail import Address, OutboundAddress
from switchboard.threading import templates as tpl
from switchboard.threading.config import load_file, load_templates

from .conftest import TEST_CONFIG, Threading

CASE = {
    "_id": 14355,
    "service": "support",
    "subject": "Printer broken",
    "thread_id": "JXA6PDRNQ2SO",
    "contact": {"name": "Ann <b>Customer</b>", "address": "ann@customer.example"},
}


def _template(**fields: Any) -> tpl.ReplyTemplate:
    return tpl.ReplyTemplate(**{"template_id": "t1", "name": "T", "text": "x", **fields})


# -- rules, without servers ---------------------------------------------------------------------


def test_every_case_field_is_filled_and_html_is_escaped() -> None:
    template = _template(
        subject="Case {{ case_number }}",
        text="{{ customer_name }}|{{ case_number }}|{{ agent_name }}|{{ subject }}|{{ thread_id }}",
        html="<p>{{ customer_name }}</p>",
    )
    values = tpl.case_values(CASE, agent_name="Sam Agent", thread_id=None)
    out = tpl.render(template, values)
    assert out.text == "Ann <b>Customer</b>|14355|Sam Agent|Printer broken|JXA6PDRNQ2SO"
    assert out.html == "<p>Ann &lt;b&gt;Customer&lt;/b&gt;</p>"
    assert out.subject == "Case 14355"


def test_the_customer_name_falls_back_to_the_address() -> None:
    values = tpl.case_values(
        {**CASE, "contact": {"name": " ", "address": "x@y.example"}}, agent_name=None, thread_id="T"
    )
    assert values["customer_name"] == "x@y.example" and "agent_name" not in values


def test_a_variable_without_a_value_is_an_error_naming_it() -> None:
    template = _template(text="Regards, {{ agent_name }}")
    with pytest.raises(tpl.TemplateProblem) as caught:
        tpl.render(template, tpl.case_values(CASE, agent_name=None, thread_id=None))
    assert caught.value.code == "template_variable_missing"
    assert caught.value.field == "agent_name" and "'agent_name'" in caught.value.message


@pytest.mark.parametrize(
    ("fields", "code", "field", "says"),
    [
        ({"text": "Hello {{ customer_name }"}, "bad_template", "text", "line 1"),
        ({"text": "ok", "html": "{% if %}"}, "bad_template", "html", "line 1"),
        ({"text": "Hi {{ customer_nmae }}"}, "unknown_variable", "text", "'customer_nmae'"),
        ({"text": "{{ ''.__class__.__mro__ }}"}, "template_unsafe", "text", "__class__"),
        ({"text": "{{ 'x' * 100000000 }}"}, "template_unsafe", "text", "repeating"),
        ({"text": "{{ 9 ** 99999999 }}"}, "template_unsafe", "text", "power"),
        ({"text": "ok", "subject": "two\nlines"}, "bad_template", "subject", "single line"),
    ],
)
def test_a_broken_or_unsafe_template_is_refused_naming_the_part(
    fields: dict[str, str], code: str, field: str, says: str
) -> None:
    candidate = tpl.ReplyTemplate.model_construct(template_id="t", name="T", services=[], **fields)
    problem = tpl.template_problem(candidate)
    assert problem is not None
    assert (problem.code, problem.field) == (code, field)
    assert says in problem.message


def test_the_agents_words_come_first_in_text_and_html() -> None:
    rendered = tpl.Rendered(subject=None, text="Kind regards,\nSam", html=None)
    assert tpl.compose(rendered, text="", html=None) == ("Kind regards,\nSam", None)
    text, html = tpl.compose(rendered, text="Fixed it.", html=None)
    assert (text, html) == ("Fixed it.\n\nKind regards,\nSam", None)
    # Only one side has HTML: the HTML part carries both, the other converted and escaped.
    text, html = tpl.compose(rendered, text="a < b", html="<p>a &lt; b</p>")
    assert html == "<p>a &lt; b</p>\n<p>Kind regards,<br>\nSam</p>"
    with_html = tpl.Rendered(subject=None, text="Regards", html="<p><i>Regards</i></p>")
    _, html = tpl.compose(with_html, text="1 < 2\n\nbye", html=None)
    assert html == "<p>1 &lt; 2</p><p>bye</p>\n<p><i>Regards</i></p>"


def test_templates_come_from_the_config_file_and_a_bad_one_stops_the_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "threading.json"
    path.write_text(json.dumps(TEST_CONFIG), encoding="utf-8")
    assert [t.template_id for t in load_templates(path)] == ["greeting", "sales-offer"]
    assert [s.name for s in load_file(path)] == ["support", "sales", "billing"]
    by_name = {"templates": {"hi": {"name": "Hi", "text": "Hi {{ customer_name }}"}}}
    path.write_text(json.dumps(by_name), encoding="utf-8")
    assert load_templates(path)[0].variables() == ["customer_name"]
    assert load_file(path) == []
    path.write_text(
        json.dumps({"templates": [{"template_id": "x", "name": "X", "text": "{{ nope }}"}]}),
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="unknown variable 'nope'"):
        load_templates(path)


# -- with the service --------------------------------------------------------------------------


def _refused(outcome: Outcome, field: str, code: str) -> None:
    assert not outcome.ok, outcome.result
    assert outcome.error is not None
    assert (outcome.error.field, outcome.error.code) == (field, code), outcome.error


async def test_a_reply_with_a_template_is_rendered_with_the_case_fields(
    threading: Threading,
) -> None:
    t = threading
    first = await t.held_case(
        sender=Address(name="Ann <b>Customer</b>", address="ann@customer.example")
    )
    number = first["case_number"]
    sent = await t.request(
        c.ReplyToCase(
            case_number=number,
            agent_id="a1",
            agent_name="Sam Agent",
            text="I have ordered the part.",
            template_id="greeting",
            finish=False,
        )
    )
    assert sent.ok, sent.error
    thread_id = sent.result["thread_id"]
    [out] = await t.drain("outbound")
    assert out["subject"] == f"Re: Printer broken [Ref:{thread_id}]"  # replies keep Re:
    assert out["text"] == (
        'I have ordered the part.\n\nDear Ann <b>Customer</b>,\n\nabout "Printer broken": '
        f"your case number is {number} (reference {thread_id}).\n\nKind regards,\nSam Agent"
    )
    assert out["html"] == (
        "<p>I have ordered the part.</p>\n<p>Dear Ann &lt;b&gt;Customer&lt;/b&gt;,</p>"
        f"<p>Case {number} ({thread_id}): Printer broken</p><p>Sam Agent</p>"
    )
    stored = await t.store.get_email(sent.result["email_id"])
    assert stored is not None and stored["template_id"] == "greeting"
    assert stored["text"] == out["text"]
    # A follow-up without a subject of its own takes the template's.
    follow = await t.command(
        c.SendFollowUp(case_number=number, agent_id="a1", agent_name="Sam", template_id="greeting")
    )
    assert follow.ok, follow.error
    assert (await t.drain("outbound"))[-1]["subject"] == (
        f"About your case {number} [Ref:{thread_id}]"
    )


async def test_refused_templates_change_nothing(threading: Threading) -> None:
    t = threading
    first = await t.held_case()
    number = first["case_number"]
    before = await t.case(number)

    unknown = await t.request(
        c.ReplyToCase(case_number=number, agent_id="a1", template_id="nope", agent_name="Sam")
    )
    _refused(unknown, "template_id", "unknown_template")
    assert "'nope'" in unknown.error.message  # type: ignore[union-attr]
    elsewhere = await t.command(
        c.ReplyToCase(case_number=number, agent_id="a1", template_id="sales-offer")
    )
    _refused(elsewhere, "template_id", "template_not_for_service")
    nameless = await t.command(
        c.ReplyToCase(case_number=number, agent_id="a1", template_id="greeting")
    )
    _refused(nameless, "agent_name", "template_variable_missing")
    assert "agent_name" in nameless.error.message  # type: ignore[union-attr]
    draft = await t.command(
        c.SaveDraft(case_number=number, agent_id="a1", content=c.Composition(template_id="nope"))
    )
    _refused(draft, "content.template_id", "unknown_template")

    after = await t.case(number)
    assert after["thread_id"] is None and after["version"] == before["version"]
    assert [e["_id"] async for e in t.store.emails.find({"case_number": number})] == [first["_id"]]
    assert await t.store.drafts_of_case(number) == []
    assert await t.drain("outbound") == []


async def test_supervisors_keep_templates_and_drafts_and_new_mail_use_them(
    threading: Threading,
) -> None:
    t = threading
    listed = await t.request(c.ListReplyTemplates(agent_id="a1", service="support"))
    assert listed.ok, listed.error
    assert [x["template_id"] for x in listed.result["templates"]] == ["greeting"]
    assert "agent_name" in listed.result["templates"][0]["variables"]
    assert set(listed.result["variables"]) == set(tpl.VARIABLES)

    def save(**fields: Any) -> c.SaveReplyTemplate:
        values: dict[str, Any] = {
            "agent_id": "sup",
            "acting_role": "supervisor",
            "template_id": "thanks",
            "name": "Thanks",
            "text": "Thank you, {{ customer_name }}.",
            **fields,
        }
        return c.SaveReplyTemplate(**values)

    _refused(await t.request(save(acting_role="agent")), "acting_role", "forbidden")
    _refused(await t.command(save(text="Thanks {{ name }}")), "text", "unknown_variable")
    _refused(await t.command(save(html="<p>{{ x }</p>")), "html", "bad_template")
    _refused(await t.command(save(services=["nowhere"])), "services.0", "unknown_service")
    created = await t.request(save())
    assert created.ok and created.result == {"template_id": "thanks", "version": 1, "created": True}
    _refused(await t.command(save(expected_version=0)), "expected_version", "stale_template")
    edited = await t.command(save(text="Many thanks, {{ customer_name }}.", expected_version=1))
    assert edited.ok and edited.result["version"] == 2
    _refused(await t.command(save(expected_version=1)), "expected_version", "stale_template")

    first = await t.held_case()
    number = first["case_number"]
    draft = await t.command(
        c.SaveDraft(
            case_number=number,
            agent_id="a1",
            content=c.Composition(text="Sorted.", template_id="thanks"),
        )
    )
    assert draft.ok, draft.error
    sent = await t.command(
        c.ReplyToCase(
            case_number=number, agent_id="a1", draft_id=draft.result["draft_id"], finish=False
        )
    )
    assert sent.ok, sent.error
    out = (await t.drain("outbound"))[-1]
    assert out["text"] == "Sorted.\n\nMany thanks, Ann Customer."

    new = await t.command(
        c.SendNewOutbound(
            agent_id="a1",
            agent_name="Sam",
            service="sales",
            subject="Your quote",
            to=[OutboundAddress(name="Carl", address="carl@customer.example")],
            template_id="sales-offer",
        )
    )
    assert new.ok, new.error
    assert (await t.drain("outbound"))[-1]["text"] == "Our offer for you, Carl."

    gone = await t.request(
        c.DeleteReplyTemplate(agent_id="sup", acting_role="supervisor", template_id="thanks")
    )
    assert gone.ok, gone.error
    again = await t.command(c.SendFollowUp(case_number=number, agent_id="a1", template_id="thanks"))
    _refused(again, "template_id", "unknown_template")
    _refused(
        await t.command(
            c.DeleteReplyTemplate(agent_id="sup", acting_role="supervisor", template_id="thanks")
        ),
        "template_id",
        "unknown_template",
    )
    listed = await t.command(c.ListReplyTemplates(agent_id="a1"))
    assert "thanks" not in [x["template_id"] for x in listed.result["templates"]]
    # The id may be used again: a new template, its versions going on from the old ones.
    reborn = await t.command(save(text="Cheers, {{ customer_name }}.", expected_version=0))
    assert reborn.ok and reborn.result["version"] == 4, reborn
    again = await t.command(c.SendFollowUp(case_number=number, agent_id="a1", template_id="thanks"))
    assert again.ok, again.error
    assert (await t.drain("outbound"))[-1]["text"] == "Cheers, Ann Customer."


async def test_file_templates_are_seeded_only_into_an_empty_store(threading: Threading) -> None:
    t = threading
    stored = await t.store.get_template("greeting")
    assert stored is not None and stored["version"] == 1
    edited = await t.command(
        c.SaveReplyTemplate(
            agent_id="sup",
            acting_role="supervisor",
            template_id="greeting",
            name="Hello",
            text="Hello {{ customer_name }}",
        )
    )
    assert edited.ok, edited.error
    assert not await t.store.seed_templates([{"_id": "greeting", "name": "from file"}])
    again = await t.store.get_template("greeting")
    assert again is not None and again["name"] == "Hello" and again["version"] == 2
