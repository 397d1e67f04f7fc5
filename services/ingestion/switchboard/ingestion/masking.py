"""Follow threading's masking: once a case's text is masked, no copy here may undo it.

Threading replaces the marked spans irreversibly in its copy and publishes ``case.masked`` with
the emails it touched (its keys: the Message-ID without angle brackets, or ``sha256-<email_id>``
for a mail it filed without one). The raw bytes here still hold the unmasked text, and so do
the sanitised HTML and the whole long text kept as blobs. We do not know the spans (the event
carries none, on purpose, so no dead letter or log holds them), so we *destroy* those copies:
the raw mail, its HTML and its full text are deleted from GridFS, and a lock document keeps the
fact (case, who masked, when, what kind); ``/mail/raw`` and ``/mail/blobs`` answer 410 Gone,
naming the case. Threading's masked copy is the email from then on. Attachments are not text
threading masks and stay (replies and forwards attach them).

Card numbers found automatically never get here: the mail edge masks them before storing.
Idempotent: a lock is a document under a natural key, written with an upsert; destroying what
is gone already does nothing.
"""

from __future__ import annotations

import hashlib

import structlog

from switchboard.contracts.cases import CaseMasked
from switchboard.ingestion.parsing import ParsedMail, parse
from switchboard.ingestion.store import BlobMissing, Document, MailStore

log = structlog.get_logger("switchboard.ingestion.masking")


def _refs_by_parsing(raw: bytes, doc: Document) -> list[str]:
    """The HTML and text blob ids of a mail published before they were recorded on its
    document: the parse is deterministic, so parsing again finds the same ids."""
    parsed = parse(raw, received_at=doc["received_at"], envelope_sender=doc.get("envelope_sender"))
    if not isinstance(parsed, ParsedMail):
        return []
    refs = [hashlib.sha256(parsed.text.encode("utf-8")).hexdigest()]
    if parsed.html:
        refs.append(hashlib.sha256(parsed.html.encode("utf-8")).hexdigest())
    return refs


class MaskFollower:
    def __init__(self, store: MailStore) -> None:
        self._store = store

    async def on_case_masked(self, event: CaseMasked) -> dict[str, int]:
        """Destroy the raw copies (and their HTML and full text) of the masked emails."""
        mails = await self._store.mails_for_keys(event.email_ids)
        facts = {
            "case_number": event.case_number,
            "masked_by": str(event.message_id),
            "agent_id": event.agent_id,
            "kind": "card_numbers" if event.automatic else "spans",
            "destroyed": True,
        }
        blobs = 0
        for doc in mails:
            refs = [r for r in (doc.get("html_ref"), doc.get("text_ref")) if r]
            if "html_ref" not in doc:
                try:
                    raw = await self._store.raw.get(doc["_id"])
                except BlobMissing:
                    raw = None
                if raw is not None:
                    refs = _refs_by_parsing(raw, doc)
            for ref in refs:
                await self._store.lock("blob", ref, facts)
            await self._store.lock("raw", doc["_id"], facts)  # last: once it shows, all do
            # locked first (served as 410 from here on), then the bytes go
            await self._store.raw.destroy(doc["_id"])
            for ref in refs:
                await self._store.blobs.destroy(ref)
            blobs += len(refs)
            await self._store.mark_masked(doc["_id"], facts)
        log.info(
            "masked emails destroyed",
            case_number=event.case_number,
            emails=len(event.email_ids),
            raw_copies=len(mails),
            blobs=blobs,
        )
        return {"raw_copies": len(mails), "blobs": blobs}
