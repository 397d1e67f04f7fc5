"""The threading rules as plain functions: no I/O, tested directly.

* which clues an inbound mail offers, in the order they are trusted;
* whether a match by Message-ID (In-Reply-To, References) may join a case;
* what a follow-up to a closed case does; auto-replies and bounces never reopen;
* automatic mail (auto-replies, bounces) that matches no case is filed, never routed;
* whom an automatic answer may go to;
* who may act on a case; interaction ids of routing rounds.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from switchboard.contracts.mail import OutboundAddress, is_sendable_address
from switchboard.threading import access
from switchboard.threading.config import ServiceConfig
from switchboard.threading.subjects import find_tags
from switchboard.threading.threadids import ThreadIds

ClueKind = Literal["subject_tag", "header", "in_reply_to", "references"]


def message_id_key(value: str | None) -> str:
    """The stored form of a Message-ID: without angle brackets and surrounding space."""
    text = (value or "").strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text


def message_id_header(key: str) -> str:
    return f"<{key}>"


def address_key(address: str | None) -> str:
    return (address or "").strip().lower()


@dataclass(frozen=True)
class Clue:
    kind: ClueKind
    values: tuple[str, ...]


def clues(
    *,
    subject: str,
    thread_header: str | None,
    in_reply_to: str | None,
    references: list[str],
    thread_ids: ThreadIds,
    tag_format: str,
) -> list[Clue]:
    """The clues of an inbound mail in matching order.

    Only identifiers that pass the keyed check become clues: a forged, truncated or foreign tag
    ("[Ticket#123]") and a bare case number never point at a case.
    """
    found: list[Clue] = []
    tags = tuple(t for t in find_tags(subject, tag_format) if thread_ids.verify(t))
    if tags:
        found.append(Clue("subject_tag", tags))
    header = (thread_header or "").strip().upper()
    if header and thread_ids.verify(header):
        found.append(Clue("header", (header,)))
    parent = message_id_key(in_reply_to)
    if parent:
        found.append(Clue("in_reply_to", (parent,)))
    refs = tuple(
        dict.fromkeys(
            k for k in (message_id_key(r) for r in reversed(references)) if k and k != parent
        )
    )
    if refs:
        found.append(Clue("references", refs))
    return found


MESSAGE_ID_CLUES: tuple[ClueKind, ...] = ("in_reply_to", "references")
"""Clues anyone who saw one mail of the thread can copy (a Message-ID is no secret)."""


def took_part(sender: str, participants: list[str]) -> bool:
    """Whether ``sender`` is already on a message of the case."""
    return address_key(sender) in {address_key(p) for p in participants}


def may_join_by_message_id(sender: str, participants: list[str]) -> bool:
    """A match by In-Reply-To or References joins the case only when the sender already took
    part in it: a stranger who copied a Message-ID starts a new case linked to it ("possible
    related case"), so the agent's reply never goes to them. Only the keyed thread identifier
    (subject tag, header) lets a new address join, flagged as a new participant."""
    return took_part(sender, participants)


AUTOMATIC_CLASSIFICATIONS = ("auto_reply", "bounce")


def is_automatic(classification: str) -> bool:
    """Auto-replies and bounces: machines talking, never work for an agent."""
    return classification in AUTOMATIC_CLASSIFICATIONS


def files_without_routing(classification: str) -> bool:
    """Whether a *new* case opened by this mail is filed closed and never offered to an agent.

    Every email belongs to a case, so an auto-reply or bounce that matches no case still opens
    one. But nobody asked for it: routing it would put an out-of-office notice in front of an
    agent. It is created closed (``filed_unrouted`` says why); a person's later mail that
    matches it follows the closed-case policy like any other.
    """
    return is_automatic(classification)


FollowUpAction = Literal["attach", "reopen", "new_linked", "reject", "record"]


def follow_up_action(
    *,
    case_status: str,
    closed_at: datetime | None,
    classification: str,
    policy_mode: str,
    reopen_within_days: float,
    now: datetime,
) -> FollowUpAction:
    """What a mail that matched an existing case does to it.

    ``attach``: join the open case; ``record``: file it without any effect (auto-replies and
    bounces: they never reopen a case nor ask for an agent); ``reopen`` / ``new_linked`` /
    ``reject``: the closed-case policy.
    """
    if is_automatic(classification):
        return "record"
    if case_status != "closed":
        return "attach"
    if policy_mode == "reject":
        return "reject"
    if policy_mode == "new_linked":
        return "new_linked"
    if closed_at is not None and now - closed_at <= timedelta(days=reopen_within_days):
        return "reopen"
    return "new_linked"


_NO_REPLY = re.compile(
    r"^(mailer-daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|noreply|"
    r"bounces?|listserv|majordomo)([+\-_.].*)?$",
    re.IGNORECASE,
)


def may_answer_automatically(
    sender: str, classification: str, own: Collection[str] = frozenset()
) -> bool:
    """Never answer auto-replies, bounces, list mail, mailer-daemon or no-reply senders, nor
    one of our own addresses (``own``, as ``address_key`` gives them: the mailbox the mail
    came to, every service's sender address): that would answer ourselves, maybe forever;
    nor an address that is not one plain ``local@domain`` (it could not be sent to)."""
    if classification != "normal":
        return False
    key = address_key(sender)
    if key in own or not is_sendable_address(sender.strip()):
        return False
    local, at, domain = key.rpartition("@")
    if not at or not local or not domain:
        return False
    return not _NO_REPLY.match(local)


def answer_address_problem(name: str, address: str) -> str | None:
    """Why an automatic answer cannot be addressed to this sender (``None``: it can). A mail
    from an address we cannot write to is still filed and routed; only the answer is skipped."""
    try:
        OutboundAddress(name=name, address=address)
    except ValidationError as exc:
        return f"cannot be addressed to {address!r}: {exc.errors()[0]['msg']}"
    return None


DELIVERY_RANK = {"requested": 0, "failed_temporarily": 1, "sent": 2, "failed": 3, "bounced": 3}
"""How far an outbound email's delivery got: a later stage is never undone by an earlier one."""


def delivery_may_change(current: str | None, new: str) -> bool:
    """Whether delivery news ``new`` replaces ``current``.

    ``email.sent``, ``email.delivery_failed`` and bounces arrive on different queues, so a
    late "failed for now" must not hide "sent", and a late "sent" must not hide a bounce.
    News of the same stage replaces (a newer detail).
    """
    return DELIVERY_RANK.get(new, 0) >= DELIVERY_RANK.get(current or "requested", 0)


def rate_window(now: datetime, minutes: int) -> str:
    """The fixed window a timestamp falls into, as a key (per-recipient rate limits)."""
    epoch_minutes = int(now.timestamp() // 60)
    return str(epoch_minutes // minutes)


def interaction_id(case_number: int, round_: int) -> str:
    return f"case-{case_number}" if round_ <= 1 else f"case-{case_number}.{round_}"


def parse_interaction_id(value: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"case-(\d+)(?:\.(\d+))?", value)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2) or 1)


def holder_problem(case: dict[str, Any], agent_id: str, acting_role: str) -> str | None:
    """Why this person may not act on the case (None when they may): see ``access``."""
    return access.act_problem(case, agent_id, acting_role)


def agents_last_first(agents: list[str], agent_id: str) -> list[str]:
    return [agent_id, *[a for a in agents if a != agent_id]]


def check_disposition(config: ServiceConfig, name: str) -> tuple[str, bool] | None:
    found = config.disposition(name)
    return (found.name, found.final) if found else None


def references_for_reply(
    parent_references: list[str], parent_key: str, limit: int = 20
) -> list[str]:
    """The References of a reply: the parent's, then the parent itself (the last ``limit``)."""
    keys = [k for k in (message_id_key(r) for r in parent_references) if k and k != parent_key]
    keys.append(parent_key)
    return [message_id_header(k) for k in keys[-limit:]]


def fill(template: str, **values: Any) -> str:
    """Fill ``{case_number}``-style placeholders; unknown ones stay as written."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(values[name]) if name in values else match.group(0)

    return re.sub(r"\{(\w+)\}", one, template)
