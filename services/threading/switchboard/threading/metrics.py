"""Threading's own Prometheus metrics (the runtime adds bus and consumer metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EMAILS_FILED = Counter(
    "switchboard_threading_emails_filed_total",
    "Inbound emails filed under a case, by what happened",
    ["action", "matched_by"],
)
DUPLICATE_EMAILS = Counter(
    "switchboard_threading_duplicate_emails_total",
    "The same Message-ID received again (another mailbox): kept as one email",
)
REUSED_MESSAGE_IDS = Counter(
    "switchboard_threading_reused_message_ids_total",
    "A known Message-ID on a mail with other content: filed as an email of its own, flagged",
)
CASES_CREATED = Counter(
    "switchboard_threading_cases_created_total", "Cases opened", ["queue", "origin"]
)
UNROUTED_CASES = Counter(
    "switchboard_threading_unrouted_cases_total",
    "Cases opened closed, never routed: automatic mail (auto-reply, bounce) matching no case",
    ["queue", "classification"],
)
CASES_CLOSED = Counter("switchboard_threading_cases_closed_total", "Cases closed", ["queue"])
COMMANDS = Counter(
    "switchboard_threading_commands_total", "Agent commands, by outcome", ["command", "outcome"]
)
AUTO_ANSWERS = Counter(
    "switchboard_threading_auto_answers_total",
    "Automatic acknowledgements and rejections, sent or suppressed",
    ["kind", "outcome"],
)
CARDS_MASKED = Counter(
    "switchboard_threading_card_numbers_masked_total", "Payment card numbers masked on intake"
)
REJECTED_TAGS = Counter(
    "switchboard_threading_unverified_tags_total",
    "Thread tags in subjects that failed the keyed check (forged, mistyped, foreign)",
)
FIRST_RESPONSE_SECONDS = Histogram(
    "switchboard_threading_first_response_seconds",
    "From an inbound case's opening to the agent's first reply to the customer",
    ["queue"],
    buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800),
)
INTAKE_SECONDS = Histogram(
    "switchboard_threading_intake_seconds",
    "Time to file one inbound email (store + publish)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
