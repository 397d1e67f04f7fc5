"""What a fault-injection run must show at the end, read from the services' own databases, the
agents' desks and the outbound SMTP sink. Each check gives figures and violations."""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

from agents import Desk
from pymongo import AsyncMongoClient


@dataclass
class Mail:
    number: int
    subject: str
    sender: str
    answered_at: float | None = None
    """Wall-clock time of the 250, None if it was never accepted."""


@dataclass
class Filed:
    case_number: int
    stored_at: float


@dataclass
class Findings:
    figures: list[tuple[str, str]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def figure(self, name: str, value: object) -> None:
        self.figures.append((name, str(value)))

    def violate(self, text: str) -> None:
        self.violations.append(text)


async def filed_mails(
    client: AsyncMongoClient[dict[str, Any]], prefix: str, tag: str
) -> dict[str, list[Filed]]:
    """Subject -> every inbound email record threading holds for it."""
    emails = client[f"{prefix}_threading"]["emails"]
    found: dict[str, list[Filed]] = defaultdict(list)
    async for doc in emails.find(
        {"direction": "inbound"}, {"subject": 1, "case_number": 1, "stored_at": 1}
    ):
        subject = str(doc.get("subject", ""))
        if tag in subject:
            stored: datetime = doc["stored_at"]
            found[subject].append(Filed(int(doc["case_number"]), stored.timestamp()))
    return found


async def routed_cases(client: AsyncMongoClient[dict[str, Any]], prefix: str) -> set[int]:
    """Case numbers routing holds an interaction for (live or ended)."""
    db = client[f"{prefix}_routing"]
    numbers: set[int] = set()
    for name in ("work", "ended_work"):
        async for doc in db[name].find({}, {"_id": 1}):
            key = str(doc["_id"])
            if key.startswith("case-"):
                numbers.add(int(key.removeprefix("case-").split(".")[0]))
    return numbers


def check_filing(
    mails: list[Mail], filed: dict[str, list[Filed]], routed: set[int], desk: Desk
) -> Findings:
    found = Findings()
    answered = [m for m in mails if m.answered_at is not None]
    lost = [m for m in answered if not filed.get(m.subject)]
    doubled = [m for m in answered if len(filed.get(m.subject, [])) > 1]
    found.figure("mails sent", len(mails))
    found.figure("mails answered 250", len(answered))
    found.figure("250 but not filed by the end of the run", len(lost))
    found.figure("filed more than once", len(doubled))
    for mail in lost[:10]:
        found.violate(f"mail #{mail.number} was answered 250 but not filed by the end")
    for mail in doubled[:10]:
        found.violate(f"mail #{mail.number} filed {len(filed[mail.subject])} times")
    numbers = Counter(f.case_number for m in answered for f in filed.get(m.subject, [])[:1])
    shared = {n: c for n, c in numbers.items() if c > 1}
    found.figure("case numbers used for two mails", len(shared))
    for number, count in list(shared.items())[:10]:
        found.violate(f"case {number} holds {count} different customers' first mails")
    unrouted = [n for n in numbers if n not in routed]
    found.figure("cases not routed", len(unrouted))
    for number in unrouted[:10]:
        found.violate(f"case {number} was filed but never routed")
    offered = {
        int(o.interaction_id.removeprefix("case-").split(".")[0]) for o in desk.offers.values()
    }
    found.figure("cases offered to an agent", len(set(numbers) & offered))
    found.figure("cases closed by an agent", len(set(numbers) & desk.disposed))
    return found


def check_offers(desk: Desk) -> Findings:
    found = Findings()
    winners: dict[str, list[str]] = defaultdict(list)
    for interaction, agent in desk.assigned:
        winners[interaction].append(agent)
    twice = {i: a for i, a in winners.items() if len(a) > 1}
    found.figure("offers made", len(desk.offers))
    found.figure("interactions assigned", len(winners))
    found.figure("interactions assigned twice", len(twice))
    for interaction, agents in list(twice.items())[:10]:
        found.violate(f"{interaction} assigned to {agents}")
    by_interaction = defaultdict(list)
    for offer in desk.offers.values():
        by_interaction[offer.interaction_id].append(offer)
    overlapping = 0
    for interaction, offers in by_interaction.items():
        offers.sort(key=lambda o: o.made_at)
        for before, after in itertools.pairwise(offers):
            still_open = before.closed_at is None or before.closed_at > after.made_at
            if before.agent_id != after.agent_id and still_open and before.accepted:
                overlapping += 1
                found.violate(
                    f"{interaction} offered to {after.agent_id} while {before.agent_id}'s "
                    "accepted offer was open"
                )
    found.figure("interactions offered to two agents at once", overlapping)
    found.figure(
        "offer on a desk after routing made it (s): p50 / p95 / max",
        spread([o.delay for o in desk.offers.values() if o.delay is not None]),
    )
    refused = Counter(_refusal_kind(o.refusal) for o in desk.offers.values() if o.refusal)
    found.figure("accepts refused or unanswered", sum(refused.values()))
    for kind, count in refused.most_common(5):
        found.figure(f"  {kind}", count)
    found.figure("agent states not asked for", len(desk.surprises))
    kinds = Counter(s.split(": ", 1)[1] for s in desk.surprises)
    for kind, count in kinds.most_common(5):
        found.figure(f"  {kind}", count)
    # the desk's own calls that the loaded system did not answer in time: shown, not a loss
    found.figure("agent calls given up", len(desk.errors))
    for error in desk.errors[:5]:
        found.figure(f"  {error[:70]}", "")
    return found


def spread(values: list[float]) -> str:
    """p50 / p95 / max of some seconds, or ``-``."""
    if not values:
        return "-"
    values = sorted(values)
    pick = [values[len(values) // 2], values[int(len(values) * 0.95)], values[-1]]
    return " / ".join(f"{v:.1f}" for v in pick)


def _refusal_kind(refusal: str) -> str:
    """The refusal's code (``offer_closed``, ...) or its first words."""
    match = re.search(r'"code":\s*"([^"]+)"', refusal)
    return match.group(1) if match else refusal[:60]


def check_answers(mails: list[Mail], outbound: list[EmailMessage]) -> Findings:
    found = Findings()
    customers = {m.sender for m in mails}
    per_customer = Counter(parseaddr(str(m["To"]))[1].lower() for m in outbound)
    acks = {c: n for c, n in per_customer.items() if c in customers}
    found.figure("automatic answers sent", sum(acks.values()))
    twice = {c: n for c, n in acks.items() if n > 1}
    found.figure("customers answered twice for one mail", len(twice))
    for customer, count in list(twice.items())[:10]:
        found.violate(f"{customer} got {count} automatic answers for one mail")
    return found
