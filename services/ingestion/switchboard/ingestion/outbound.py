"""Deliver what threading asks to send, through the configured SMTP relay, exactly once.

The send record (collection ``outbound``, ``_id`` = ``outbound_id``) is the once-only guard:

``new``/``deferred`` -> ``sending`` (written *before* the DATA command) -> ``sent`` | ``failed``.

* 4xx anywhere (or no connection): nothing was delivered; the record goes to ``deferred`` and the
  handler raises, so the runtime retries with backoff. After ``outbound_max_tries`` tries the
  request ends as ``email.delivery_failed`` (``permanent=False``).
* 5xx: ``email.delivery_failed`` with the relay's reply.
* 250 after DATA: ``email.sent``.
* A redelivered request whose record is ``sent``/``failed`` re-publishes the same outcome event
  (deterministic id) and sends nothing. One found in ``sending`` means the process died, or the
  connection broke, during DATA: whether the relay took it is unknown, so it is *not* sent again
  but reported as failed with ``permanent=False`` and the reason (never twice beats maybe twice).
* Any other error (a damaged stored attachment, the database away, a bug) is retried by the
  runtime like any handler error; on the runtime's last attempt the request ends as
  ``email.delivery_failed`` (``permanent=False``, the error as the reason) instead of vanishing
  into the dead-letter queue unseen by threading. So every request that validates ends in
  ``email.sent`` or ``email.delivery_failed``; only a request that does not validate into the
  contract (no trustworthy ``outbound_id``) is dead-lettered without one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosmtplib
import structlog
from faststream.rabbit import RabbitBroker

from switchboard.contracts import topology
from switchboard.contracts.mail import EmailDeliveryFailed, EmailOutboundRequested, EmailSent
from switchboard.ingestion import metrics
from switchboard.ingestion.compose import (
    Unsendable,
    compose,
    envelope_address,
    needs_smtputf8,
    recipients,
)
from switchboard.ingestion.store import BlobMissing, MailStore
from switchboard.runtime.bus import Bus
from switchboard.runtime.errors import InHandElsewhere

log = structlog.get_logger("switchboard.ingestion.outbound")


class DeliveryDeferred(RuntimeError):
    """The relay said "later" (4xx) or could not be reached: the runtime retries."""


class BeingSent(DeliveryDeferred, InHandElsewhere):
    """Another copy of the request is in DATA right now: that copy will end it. Checked again
    later without spending an attempt: a copy whose sender was killed in DATA must end as
    "delivery state unknown" once the sending lease runs out, never in the dead-letter queue."""


def attempt_in_hand(broker: RabbitBroker) -> Callable[[], int]:
    """Which try of the message being handled this is (the runtime's ``x-sb-attempt`` header,
    read from FastStream's per-message context; 1 when absent)."""

    def attempt() -> int:
        message = broker.context.get_local("message")
        headers = getattr(message, "headers", None) or {}
        try:
            return int(headers.get(topology.HEADER_ATTEMPT, 1))
        except (TypeError, ValueError):
            return 1

    return attempt


@dataclass(frozen=True)
class RelayConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool | None = None
    validate_certs: bool = True
    ca_file: str | None = None
    timeout: float = 60.0
    envelope_from: str | None = None
    max_tries: int = 5
    sending_lease: timedelta = timedelta(minutes=10)


@dataclass
class _Refusal:
    code: int | None
    reply: str


class OutboundSender:
    def __init__(
        self,
        store: MailStore,
        bus: Bus,
        relay: RelayConfig,
        *,
        attempt: Callable[[], int] = lambda: 1,
        max_attempts: int = 5,
    ) -> None:
        self._store = store
        self._bus = bus
        self._relay = relay
        self._attempt = attempt
        self._max_attempts = max_attempts

    async def on_outbound_requested(self, request: EmailOutboundRequested) -> dict[str, Any]:
        """Deliver one outbound mail through the relay (once); always end in sent or failed."""
        try:
            return await self._handle(request)
        except BeingSent:
            raise
        except Exception as exc:
            attempt = self._attempt()
            if attempt < self._max_attempts:
                raise
            return await self._give_up(request, exc, attempt)

    async def _give_up(
        self, request: EmailOutboundRequested, exc: Exception, attempt: int
    ) -> dict[str, Any]:
        """The runtime's last attempt failed: tell threading, rather than dead-letter silently.
        A record that says "sent" means the mail went out: that is never reported as failed
        (the error propagates and the request is dead-lettered for an operator)."""
        record = None
        with contextlib.suppress(Exception):
            record = await self._store.outbound_record(request.outbound_id)
        if record is not None and record.get("state") == "sent":
            raise exc
        if isinstance(exc, DeliveryDeferred):
            reason = f"gave up after {attempt} attempts; last reply: {exc}"
        else:
            reason = f"gave up after {attempt} attempts: {type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):  # the event matters more than our record
            await self._store.outbound_set(
                request.outbound_id, "failed", smtp_code=None, smtp_reply=reason, permanent=False
            )
        metrics.DELIVERY_FAILED.labels("false").inc()
        log.error("outbound mail given up", outbound_id=request.outbound_id, reason=reason)
        await self._published_failed(request, None, reason, False)
        return {"state": "failed", "permanent": False}

    async def _handle(self, request: EmailOutboundRequested) -> dict[str, Any]:
        record = await self._store.outbound_begin(
            request.outbound_id,
            {
                "internet_message_id": request.internet_message_id,
                "case_number": request.case_number,
                "created_at": datetime.now(UTC),
            },
        )
        state = record["state"]
        if state == "sent":
            await self._published_sent(request, str(record.get("relay_reply", "")))
            return {"state": "sent", "repeat": True}
        if state == "failed":
            await self._published_failed(
                request,
                record.get("smtp_code"),
                str(record.get("smtp_reply", "")),
                bool(record.get("permanent", True)),
            )
            return {"state": "failed", "repeat": True}
        if state == "sending":
            since = record.get("sending_since")
            if (
                since is not None
                and since.replace(tzinfo=since.tzinfo or UTC)
                > datetime.now(UTC) - self._relay.sending_lease
            ):
                raise BeingSent("another copy of this request is being sent right now")
            return await self._fail(
                request,
                None,
                "delivery state unknown: the previous attempt stopped during DATA; "
                "not sent again to avoid a duplicate",
                permanent=False,
            )
        return await self._deliver(request, state, int(record.get("tries", 1)))

    async def _deliver(
        self, request: EmailOutboundRequested, state: str, tries: int
    ) -> dict[str, Any]:
        try:
            attachments = []
            for ref in request.attachments:
                data = await self._store.blobs.get(ref.attachment_id)
                attachments.append((ref.filename, ref.content_type, data, ref.content_id))
            utf8 = needs_smtputf8(request, self._relay.envelope_from)
            message = compose(request, attachments, utf8=utf8)
            sender = envelope_address(
                self._relay.envelope_from or request.sender.address, utf8=utf8
            )
            rcpts = [envelope_address(r, utf8=utf8) for r in recipients(request)]
        except BlobMissing as exc:
            return await self._fail(request, None, f"attachment {exc} is not stored here", True)
        except Unsendable as exc:
            return await self._fail(request, None, f"refused before sending: {exc}", True)
        data = message.as_bytes()
        encoding = "utf-8" if utf8 else "ascii"
        relay = self._relay
        smtp = aiosmtplib.SMTP(
            hostname=relay.host,
            port=relay.port,
            username=relay.username,
            password=relay.password,
            use_tls=relay.use_tls,
            start_tls=relay.start_tls,
            validate_certs=relay.validate_certs,
            cert_bundle=relay.ca_file,
            timeout=relay.timeout,
        )
        try:
            try:
                await smtp.connect()
                options: list[str] = []
                if utf8:
                    if not smtp.supports_extension("smtputf8"):
                        return await self._fail(
                            request,
                            None,
                            "the relay does not offer SMTPUTF8, which an address with non-ASCII "
                            "characters before the @ needs; not sent",
                            True,
                        )
                    options = ["SMTPUTF8"]
                    if smtp.supports_extension("8bitmime"):
                        options.append("BODY=8BITMIME")
                await smtp.mail(sender, options=options, encoding=encoding)
                refused: dict[str, _Refusal] = {}
                for rcpt in rcpts:
                    try:
                        await smtp.rcpt(rcpt, encoding=encoding)
                    except aiosmtplib.SMTPRecipientRefused as exc:
                        refused[rcpt] = _Refusal(exc.code, f"{exc.code} {exc.message}")
            except aiosmtplib.SMTPResponseException as exc:
                return await self._refused(request, state, tries, exc.code, exc.message)
            except (aiosmtplib.SMTPException, OSError) as exc:
                return await self._defer(request, state, tries, None, f"relay unreachable: {exc}")
            if len(refused) == len(rcpts):
                worst = min(refused.values(), key=lambda r: r.code or 0)
                replies = "; ".join(f"{k}: {v.reply}" for k, v in refused.items())
                if any((r.code or 0) < 500 for r in refused.values()):
                    return await self._defer(request, state, tries, worst.code, replies)
                return await self._fail(request, worst.code, replies, True)
            if not await self._store.outbound_set(
                request.outbound_id, "sending", expect=state, sending_since=datetime.now(UTC)
            ):
                raise DeliveryDeferred("the send record changed under us; trying again later")
            try:
                response = await smtp.data(data)
            except aiosmtplib.SMTPResponseException as exc:
                await self._store.outbound_set(request.outbound_id, "deferred", expect="sending")
                return await self._refused(request, "deferred", tries, exc.code, exc.message)
            except (aiosmtplib.SMTPException, OSError) as exc:
                return await self._fail(
                    request,
                    None,
                    f"connection lost during DATA ({type(exc).__name__}: {exc}); delivery state "
                    "unknown, not sent again to avoid a duplicate",
                    permanent=False,
                )
        finally:
            if smtp.is_connected:
                try:
                    await smtp.quit()
                except (aiosmtplib.SMTPException, OSError):
                    smtp.close()
        reply = f"{response.code} {response.message}"
        if refused:
            reply += " (refused: " + "; ".join(f"{k}: {v.reply}" for k, v in refused.items()) + ")"
        await self._store.outbound_set(request.outbound_id, "sent", relay_reply=reply)
        metrics.SENT.inc()
        log.info("outbound mail sent", outbound_id=request.outbound_id, reply=reply)
        await self._published_sent(request, reply)
        return {"state": "sent"}

    async def _refused(
        self, request: EmailOutboundRequested, state: str, tries: int, code: int, reply: str
    ) -> dict[str, Any]:
        text = f"{code} {reply}"
        if 400 <= code < 500:
            return await self._defer(request, state, tries, code, text)
        return await self._fail(request, code, text, permanent=True)

    async def _defer(
        self,
        request: EmailOutboundRequested,
        state: str,
        tries: int,
        code: int | None,
        reply: str,
    ) -> dict[str, Any]:
        if tries >= self._relay.max_tries:
            return await self._fail(
                request, code, f"gave up after {tries} tries; last reply: {reply}", False
            )
        await self._store.outbound_set(
            request.outbound_id, "deferred", last_reply=reply, last_code=code
        )
        metrics.DEFERRED.inc()
        log.warning("outbound mail deferred", outbound_id=request.outbound_id, reply=reply)
        raise DeliveryDeferred(reply)

    async def _fail(
        self, request: EmailOutboundRequested, code: int | None, reply: str, permanent: bool
    ) -> dict[str, Any]:
        await self._store.outbound_set(
            request.outbound_id, "failed", smtp_code=code, smtp_reply=reply, permanent=permanent
        )
        metrics.DELIVERY_FAILED.labels(str(permanent).lower()).inc()
        log.warning("outbound mail failed", outbound_id=request.outbound_id, reply=reply)
        await self._published_failed(request, code, reply, permanent)
        return {"state": "failed", "permanent": permanent}

    async def _published_sent(self, request: EmailOutboundRequested, reply: str) -> None:
        await self._bus.publish(
            EmailSent.caused_by(
                request,
                outbound_id=request.outbound_id,
                internet_message_id=request.internet_message_id,
                case_number=request.case_number,
                relay_reply=reply[:2000],
            )
        )

    async def _published_failed(
        self, request: EmailOutboundRequested, code: int | None, reply: str, permanent: bool
    ) -> None:
        await self._bus.publish(
            EmailDeliveryFailed.caused_by(
                request,
                outbound_id=request.outbound_id,
                internet_message_id=request.internet_message_id,
                case_number=request.case_number,
                smtp_code=code,
                smtp_reply=reply[:2000] or "no reply",
                permanent=permanent,
            )
        )
