"""The queues the ingestion service (the mail edge) consumes."""

from switchboard.contracts.topology import ConsumerQueue

OUTBOUND = ConsumerQueue("ingestion.outbound", ("email.outbound.requested",))
"""Mail threading asks us to deliver through the SMTP relay."""

QUARANTINE = ConsumerQueue("ingestion.quarantine", ("email.quarantined",))
"""Our own quarantine events, kept as the operators' list (and so always routable)."""

MASKING = ConsumerQueue("ingestion.masking", ("case.masked",))
"""Threading masked a case's text: lock our raw copies of those emails (no HTTP read)."""
