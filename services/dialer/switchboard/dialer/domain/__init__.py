"""The dialer's rules: calling windows, numbers, attempts, dispositions, the record lifecycle.

Plain functions and models, no I/O: every rule takes the instant it decides for (``now``), so the
tests pin instants across DST changes.

Record lifecycle (``Record.state``)::

    pending --(due, in window, attempts left, not DNC)--> ready   (RouteRequested sent)
    ready   --(offer.made)--> offered --(interaction.assigned)--> held (agent Busy)
    held    --(complete: success / final failure / bad record)--> closed
    held    --(complete: retry or reschedule, skip, reschedule)--> pending (due later)
    pending --(attempts used up / every number DNC or bad / skipped too often)--> closed

A call is made while ``held``; it needs a disposition before the record can be completed
(unless Complete names one), skipped, or a further number dialled.

Split along concerns: ``windows`` (time zones, calling hours), ``numbers`` (E.164, zones of a
number), ``record`` (the record and its parts), ``rules`` (what may be called, routing
decisions, dispositions, campaign checks), ``picking`` and ``holding`` (transitions),
``access`` (who may see a record). Everything is importable from here.
"""

from switchboard.dialer.domain.numbers import normalise_number, number_zones
from switchboard.dialer.domain.record import (
    CONTACT,
    IN_ROUTING,
    LIVE_STATES,
    TERMINAL_CALL,
    Attempt,
    HistoryEntry,
    Phone,
    Record,
    RecordState,
    new_record_fields,
    record_id_for,
)
from switchboard.dialer.domain.rules import (
    Next,
    NumberStatus,
    Problem,
    Routing,
    after_disposition,
    check_call,
    decide_routing,
    due_pending,
    find_disposition,
    first_of_kind,
    number_statuses,
    recommended_number,
    skip_outcome,
    validate_campaign,
)
from switchboard.dialer.domain.windows import (
    in_window,
    local_minute,
    minutes,
    next_window_open,
    valid_zone,
    zone,
)

__all__ = [
    "CONTACT",
    "IN_ROUTING",
    "LIVE_STATES",
    "TERMINAL_CALL",
    "Attempt",
    "HistoryEntry",
    "Next",
    "NumberStatus",
    "Phone",
    "Problem",
    "Record",
    "RecordState",
    "Routing",
    "after_disposition",
    "check_call",
    "decide_routing",
    "due_pending",
    "find_disposition",
    "first_of_kind",
    "in_window",
    "local_minute",
    "minutes",
    "new_record_fields",
    "next_window_open",
    "normalise_number",
    "number_statuses",
    "number_zones",
    "recommended_number",
    "record_id_for",
    "skip_outcome",
    "valid_zone",
    "validate_campaign",
    "zone",
]
