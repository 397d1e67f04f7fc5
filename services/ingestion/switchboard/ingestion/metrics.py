"""Prometheus metrics of the mail edge (served on the runtime's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECEIVED = Counter(
    "switchboard_ingestion_received_total",
    "Distinct mails taken in, by channel and mailbox",
    ["channel", "mailbox"],
)
RECEIVED_BYTES = Counter(
    "switchboard_ingestion_received_bytes_total", "Raw bytes of distinct mails", ["channel"]
)
DUPLICATES = Counter(
    "switchboard_ingestion_duplicates_total",
    "Mails whose exact bytes were already stored (no second event)",
    ["channel"],
)
DEFECTS = Counter("switchboard_ingestion_defects_total", "Parse defects found, by code", ["defect"])
QUARANTINED = Counter(
    "switchboard_ingestion_quarantined_total", "Mails that could not be parsed", ["channel"]
)
REJECTED = Counter(
    "switchboard_ingestion_rejected_total",
    "Inbound mail refused or deferred, by channel and reply code",
    ["channel", "code"],
)
SENT = Counter("switchboard_ingestion_sent_total", "Outbound mails the relay accepted")
DELIVERY_FAILED = Counter(
    "switchboard_ingestion_delivery_failed_total",
    "Outbound mails given up on",
    ["permanent"],
)
DEFERRED = Counter(
    "switchboard_ingestion_delivery_deferred_total",
    "Outbound tries answered with a temporary failure (retried)",
)
IMAP_ERRORS = Counter(
    "switchboard_ingestion_imap_errors_total", "IMAP sessions that failed", ["mailbox"]
)
INGEST_SECONDS = Histogram(
    "switchboard_ingestion_ingest_seconds",
    "Store + parse + publish time of one inbound mail",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
