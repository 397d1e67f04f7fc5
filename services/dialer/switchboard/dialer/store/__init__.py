"""The dialer's MongoDB collections (whole-document writes guarded by a version field, no
positional updates, no TTL index, ``$group`` with ``$sum`` only: what every supported server
runs the same way).

* ``campaigns``: one document per campaign, its spec.
* ``records``: every calling record with its attempts and history, the one authority on a
  record: every change is one ``replace_one`` filtered on ``_id`` and the version read
  (``next_at`` of a pending record is its timer).
* ``live``: the working set, a copy of each record that is ``ready``, ``offered`` or ``held``
  (routing and agents query these few, never the big ``records``). It is derived from
  ``records`` after each write, keyed by record id and guarded by version so an older copy
  never replaces a newer one; a copy found older than its record (a crash between the two
  writes, a re-import) is refreshed or dropped when met.
* ``review_timers``: the review timer of each held record (the kernel's ``TimerQueue``).
* ``backlog``: one counter per campaign of its records in routing (the kernel's ``Slots``,
  kept under ``preview_backlog`` across replicas): a pick takes a place before it routes a
  record; given back when the record leaves routing.
* ``hopper``: records found ready now (due, in their window, attempts left, not DNC), one
  entry per record holding the record as read, refilled in batches by a background task; a
  pick re-checks the record and claims it with a write guarded by the entry's version.
* ``dnc``: dynamic do-not-call entries (global or per campaign); the campaign spec's own list
  is consulted too.
* ``skips``: one document per skip (natural key record/skip number) for reports.
* ``imports`` and ``import_errors``: progress and every bad row of each import.
* ``journal``: the record events the dialer published.
"""

from switchboard.dialer.store.base import GLOBAL, Conflict, Document
from switchboard.dialer.store.campaigns import CampaignStore
from switchboard.dialer.store.hopper import HopperStore
from switchboard.dialer.store.imports import ImportStore


class DialerStore(HopperStore, CampaignStore, ImportStore):
    """The dialer's one store adapter, one part per concern."""


__all__ = ["GLOBAL", "Conflict", "DialerStore", "Document"]
